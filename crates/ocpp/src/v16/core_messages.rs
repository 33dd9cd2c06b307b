//! The payloads of the 28 core OCPP 1.6 actions, one request and one response each, in the order
//! of the schema files. Each definition mirrors its schema (`schemas/{Action}.json` and
//! `{Action}Response.json`): property, field, required or optional, type with its limit.
//!
//! Two schema rules depend on the message, not on a shared type, and are checked here after
//! decoding (see [`check_meter_values`] and [`check_stop_transaction`]).

use super::datatypes::*;
use super::primitives::{CiString, DateTime, IdToken, NonEmpty, Uri};
use super::{Invalid, property_violation};

object! {
    pub struct AuthorizeRequest {
        required "idTag" id_tag: IdToken,
    }
}

object! {
    pub struct AuthorizeResponse {
        required "idTagInfo" id_tag_info: IdTagInfo,
    }
}

object! {
    pub struct BootNotificationRequest {
        required "chargePointVendor" charge_point_vendor: CiString<20>,
        required "chargePointModel" charge_point_model: CiString<20>,
        optional "chargePointSerialNumber" charge_point_serial_number: CiString<25>,
        optional "chargeBoxSerialNumber" charge_box_serial_number: CiString<25>,
        optional "firmwareVersion" firmware_version: CiString<50>,
        optional "iccid" iccid: CiString<20>,
        optional "imsi" imsi: CiString<20>,
        optional "meterType" meter_type: CiString<25>,
        optional "meterSerialNumber" meter_serial_number: CiString<25>,
    }
}

object! {
    pub struct BootNotificationResponse {
        required "status" status: RegistrationStatus,
        required "currentTime" current_time: DateTime,
        /// Seconds (errata: an integer).
        required "interval" interval: i64,
    }
}

object! {
    pub struct CancelReservationRequest {
        required "reservationId" reservation_id: i64,
    }
}

object! {
    pub struct CancelReservationResponse {
        required "status" status: CancelReservationStatus,
    }
}

object! {
    pub struct ChangeAvailabilityRequest {
        required "connectorId" connector_id: i64,
        required "type" r#type: AvailabilityType,
    }
}

object! {
    pub struct ChangeAvailabilityResponse {
        required "status" status: AvailabilityStatus,
    }
}

object! {
    pub struct ChangeConfigurationRequest {
        required "key" key: CiString<50>,
        required "value" value: CiString<500>,
    }
}

object! {
    pub struct ChangeConfigurationResponse {
        required "status" status: ConfigurationStatus,
    }
}

object! {
    pub struct ClearCacheRequest {}
}

object! {
    pub struct ClearCacheResponse {
        required "status" status: ClearCacheStatus,
    }
}

object! {
    pub struct ClearChargingProfileRequest {
        optional "id" id: i64,
        optional "connectorId" connector_id: i64,
        optional "chargingProfilePurpose" charging_profile_purpose: ChargingProfilePurposeType,
        optional "stackLevel" stack_level: i64,
    }
}

object! {
    pub struct ClearChargingProfileResponse {
        required "status" status: ClearChargingProfileStatus,
    }
}

object! {
    pub struct DataTransferRequest {
        required "vendorId" vendor_id: CiString<255>,
        optional "messageId" message_id: CiString<50>,
        optional "data" data: String,
    }
}

object! {
    pub struct DataTransferResponse {
        required "status" status: DataTransferStatus,
        optional "data" data: String,
    }
}

object! {
    pub struct DiagnosticsStatusNotificationRequest {
        required "status" status: DiagnosticsStatus,
    }
}

object! {
    pub struct DiagnosticsStatusNotificationResponse {}
}

object! {
    pub struct FirmwareStatusNotificationRequest {
        required "status" status: FirmwareStatus,
    }
}

object! {
    pub struct FirmwareStatusNotificationResponse {}
}

object! {
    pub struct GetCompositeScheduleRequest {
        required "connectorId" connector_id: i64,
        required "duration" duration: i64,
        optional "chargingRateUnit" charging_rate_unit: ChargingRateUnitType,
    }
}

object! {
    pub struct GetCompositeScheduleResponse {
        required "status" status: GetCompositeScheduleStatus,
        optional "connectorId" connector_id: i64,
        optional "scheduleStart" schedule_start: DateTime,
        optional "chargingSchedule" charging_schedule: ChargingSchedule,
    }
}

object! {
    pub struct GetConfigurationRequest {
        optional "key" key: Vec<CiString<50>>,
    }
}

object! {
    pub struct GetConfigurationResponse {
        optional "configurationKey" configuration_key: Vec<KeyValue>,
        optional "unknownKey" unknown_key: Vec<CiString<50>>,
    }
}

object! {
    pub struct GetDiagnosticsRequest {
        required "location" location: Uri,
        optional "retries" retries: i64,
        optional "retryInterval" retry_interval: i64,
        optional "startTime" start_time: DateTime,
        optional "stopTime" stop_time: DateTime,
    }
}

object! {
    pub struct GetDiagnosticsResponse {
        optional "fileName" file_name: CiString<255>,
    }
}

object! {
    pub struct GetLocalListVersionRequest {}
}

object! {
    pub struct GetLocalListVersionResponse {
        required "listVersion" list_version: i64,
    }
}

object! {
    pub struct HeartbeatRequest {}
}

object! {
    pub struct HeartbeatResponse {
        required "currentTime" current_time: DateTime,
    }
}

object! {
    pub struct MeterValuesRequest {
        required "connectorId" connector_id: i64,
        optional "transactionId" transaction_id: i64,
        required "meterValue" meter_value: NonEmpty<MeterValue>,
    }
}

object! {
    pub struct MeterValuesResponse {}
}

object! {
    pub struct RemoteStartTransactionRequest {
        optional "connectorId" connector_id: i64,
        required "idTag" id_tag: IdToken,
        optional "chargingProfile" charging_profile: ChargingProfile,
    }
}

object! {
    pub struct RemoteStartTransactionResponse {
        required "status" status: RemoteStartStopStatus,
    }
}

object! {
    pub struct RemoteStopTransactionRequest {
        required "transactionId" transaction_id: i64,
    }
}

object! {
    pub struct RemoteStopTransactionResponse {
        required "status" status: RemoteStartStopStatus,
    }
}

object! {
    pub struct ReserveNowRequest {
        required "connectorId" connector_id: i64,
        required "expiryDate" expiry_date: DateTime,
        required "idTag" id_tag: IdToken,
        optional "parentIdTag" parent_id_tag: IdToken,
        required "reservationId" reservation_id: i64,
    }
}

object! {
    pub struct ReserveNowResponse {
        required "status" status: ReservationStatus,
    }
}

object! {
    pub struct ResetRequest {
        required "type" r#type: ResetType,
    }
}

object! {
    pub struct ResetResponse {
        required "status" status: ResetStatus,
    }
}

object! {
    pub struct SendLocalListRequest {
        required "listVersion" list_version: i64,
        optional "localAuthorizationList" local_authorization_list: Vec<AuthorizationData>,
        required "updateType" update_type: UpdateType,
    }
}

object! {
    pub struct SendLocalListResponse {
        required "status" status: UpdateStatus,
    }
}

object! {
    pub struct SetChargingProfileRequest {
        required "connectorId" connector_id: i64,
        required "csChargingProfiles" cs_charging_profiles: ChargingProfile,
    }
}

object! {
    pub struct SetChargingProfileResponse {
        required "status" status: ChargingProfileStatus,
    }
}

object! {
    pub struct StartTransactionRequest {
        required "connectorId" connector_id: i64,
        required "idTag" id_tag: IdToken,
        required "meterStart" meter_start: i64,
        optional "reservationId" reservation_id: i64,
        required "timestamp" timestamp: DateTime,
    }
}

object! {
    pub struct StartTransactionResponse {
        required "idTagInfo" id_tag_info: IdTagInfo,
        required "transactionId" transaction_id: i64,
    }
}

object! {
    pub struct StatusNotificationRequest {
        required "connectorId" connector_id: i64,
        required "errorCode" error_code: ChargePointErrorCode,
        optional "info" info: CiString<50>,
        required "status" status: ChargePointStatus,
        optional "timestamp" timestamp: DateTime,
        optional "vendorId" vendor_id: CiString<255>,
        optional "vendorErrorCode" vendor_error_code: CiString<50>,
    }
}

object! {
    pub struct StatusNotificationResponse {}
}

object! {
    pub struct StopTransactionRequest {
        optional "idTag" id_tag: IdToken,
        required "meterStop" meter_stop: i64,
        required "timestamp" timestamp: DateTime,
        required "transactionId" transaction_id: i64,
        /// Optional (errata: absent means Local).
        optional "reason" reason: Reason,
        optional "transactionData" transaction_data: Vec<MeterValue>,
    }
}

object! {
    pub struct StopTransactionResponse {
        optional "idTagInfo" id_tag_info: IdTagInfo,
    }
}

object! {
    pub struct TriggerMessageRequest {
        required "requestedMessage" requested_message: MessageTrigger,
        optional "connectorId" connector_id: i64,
    }
}

object! {
    pub struct TriggerMessageResponse {
        required "status" status: TriggerMessageStatus,
    }
}

object! {
    pub struct UnlockConnectorRequest {
        required "connectorId" connector_id: i64,
    }
}

object! {
    pub struct UnlockConnectorResponse {
        required "status" status: UnlockStatus,
    }
}

object! {
    pub struct UpdateFirmwareRequest {
        required "location" location: Uri,
        optional "retries" retries: i64,
        required "retrieveDate" retrieve_date: DateTime,
        optional "retryInterval" retry_interval: i64,
    }
}

object! {
    pub struct UpdateFirmwareResponse {}
}

/// MeterValues.json: every meterValue has `sampledValue` with `minItems: 1`.
pub(super) fn check_meter_values(request: &MeterValuesRequest) -> Result<(), Invalid> {
    match request
        .meter_value
        .iter()
        .position(|value| value.sampled_value.is_empty())
    {
        Some(i) => Err(property_violation(format!(
            "meterValue[{i}].sampledValue: invalid length 0, expected at least one element"
        ))),
        None => Ok(()),
    }
}

/// StopTransaction.json: its SampledValue unit list predates "Hertz".
pub(super) fn check_stop_transaction(request: &StopTransactionRequest) -> Result<(), Invalid> {
    let data = request.transaction_data.as_deref().unwrap_or_default();
    for (i, meter_value) in data.iter().enumerate() {
        for (j, sampled) in meter_value.sampled_value.iter().enumerate() {
            if sampled.unit == Some(UnitOfMeasure::Hertz) {
                return Err(property_violation(format!(
                    "transactionData[{i}].sampledValue[{j}].unit: `Hertz` is not a \
                     StopTransaction unit"
                )));
            }
        }
    }
    Ok(())
}
