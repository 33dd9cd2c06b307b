//! The OCPP 1.6 core data types: the enumerations and the objects that more than one message
//! uses (the spec's chapter "Types"). The schemas repeat these inline in every message; here each
//! exists once, named as the spec names it, and is checked against each schema that inlines it by
//! `tests/schema_conformance.rs`.
//!
//! Where the repeated copies differ, the union is here and the narrower message says so itself
//! (see `MeterValue` and `UnitOfMeasure`).

use super::primitives::{CiString, DateTime, Decimal, IdToken};

enumeration! {
    /// IdTagInfo.status.
    pub enum AuthorizationStatus { Accepted, Blocked, Expired, Invalid, ConcurrentTx }
}

enumeration! {
    /// ChangeAvailability.req type.
    pub enum AvailabilityType { Inoperative, Operative }
}

enumeration! {
    /// ChangeAvailability.conf status.
    pub enum AvailabilityStatus { Accepted, Rejected, Scheduled }
}

enumeration! {
    /// CancelReservation.conf status.
    pub enum CancelReservationStatus { Accepted, Rejected }
}

enumeration! {
    /// StatusNotification.req errorCode.
    pub enum ChargePointErrorCode {
        ConnectorLockFailure,
        EVCommunicationError,
        GroundFailure,
        HighTemperature,
        InternalError,
        LocalListConflict,
        NoError,
        OtherError,
        OverCurrentFailure,
        PowerMeterFailure,
        PowerSwitchFailure,
        ReaderFailure,
        ResetFailure,
        UnderVoltage,
        OverVoltage,
        WeakSignal,
    }
}

enumeration! {
    /// StatusNotification.req status.
    pub enum ChargePointStatus {
        Available,
        Preparing,
        Charging,
        SuspendedEVSE,
        SuspendedEV,
        Finishing,
        Reserved,
        Unavailable,
        Faulted,
    }
}

enumeration! {
    /// SetChargingProfile.conf status.
    pub enum ChargingProfileStatus { Accepted, Rejected, NotSupported }
}

enumeration! {
    /// ChargingProfile.chargingProfileKind.
    pub enum ChargingProfileKindType { Absolute, Recurring, Relative }
}

enumeration! {
    /// ChargingProfile.chargingProfilePurpose, ClearChargingProfile.req.
    pub enum ChargingProfilePurposeType { ChargePointMaxProfile, TxDefaultProfile, TxProfile }
}

enumeration! {
    /// ChargingSchedule.chargingRateUnit, GetCompositeSchedule.req.
    pub enum ChargingRateUnitType { A, W }
}

enumeration! {
    /// ClearCache.conf status.
    pub enum ClearCacheStatus { Accepted, Rejected }
}

enumeration! {
    /// ClearChargingProfile.conf status.
    pub enum ClearChargingProfileStatus { Accepted, Unknown }
}

enumeration! {
    /// ChangeConfiguration.conf status.
    pub enum ConfigurationStatus { Accepted, Rejected, RebootRequired, NotSupported }
}

enumeration! {
    /// DataTransfer.conf status.
    pub enum DataTransferStatus { Accepted, Rejected, UnknownMessageId, UnknownVendorId }
}

enumeration! {
    /// DiagnosticsStatusNotification.req status.
    pub enum DiagnosticsStatus { Idle, Uploaded, UploadFailed, Uploading }
}

enumeration! {
    /// FirmwareStatusNotification.req status.
    pub enum FirmwareStatus {
        Downloaded,
        DownloadFailed,
        Downloading,
        Idle,
        InstallationFailed,
        Installing,
        Installed,
    }
}

enumeration! {
    /// GetCompositeSchedule.conf status.
    pub enum GetCompositeScheduleStatus { Accepted, Rejected }
}

enumeration! {
    /// SampledValue.location.
    pub enum Location { Cable, EV, Inlet, Outlet, Body }
}

enumeration! {
    /// SampledValue.measurand.
    pub enum Measurand {
        EnergyActiveExportRegister = "Energy.Active.Export.Register",
        EnergyActiveImportRegister = "Energy.Active.Import.Register",
        EnergyReactiveExportRegister = "Energy.Reactive.Export.Register",
        EnergyReactiveImportRegister = "Energy.Reactive.Import.Register",
        EnergyActiveExportInterval = "Energy.Active.Export.Interval",
        EnergyActiveImportInterval = "Energy.Active.Import.Interval",
        EnergyReactiveExportInterval = "Energy.Reactive.Export.Interval",
        EnergyReactiveImportInterval = "Energy.Reactive.Import.Interval",
        PowerActiveExport = "Power.Active.Export",
        PowerActiveImport = "Power.Active.Import",
        PowerOffered = "Power.Offered",
        PowerReactiveExport = "Power.Reactive.Export",
        PowerReactiveImport = "Power.Reactive.Import",
        PowerFactor = "Power.Factor",
        CurrentImport = "Current.Import",
        CurrentExport = "Current.Export",
        CurrentOffered = "Current.Offered",
        Voltage,
        Frequency,
        Temperature,
        SoC,
        RPM,
    }
}

enumeration! {
    /// TriggerMessage.req requestedMessage.
    pub enum MessageTrigger {
        BootNotification,
        DiagnosticsStatusNotification,
        FirmwareStatusNotification,
        Heartbeat,
        MeterValues,
        StatusNotification,
    }
}

enumeration! {
    /// SampledValue.phase.
    pub enum Phase {
        L1,
        L2,
        L3,
        N,
        L1N = "L1-N",
        L2N = "L2-N",
        L3N = "L3-N",
        L1L2 = "L1-L2",
        L2L3 = "L2-L3",
        L3L1 = "L3-L1",
    }
}

enumeration! {
    /// SampledValue.context.
    pub enum ReadingContext {
        InterruptionBegin = "Interruption.Begin",
        InterruptionEnd = "Interruption.End",
        SampleClock = "Sample.Clock",
        SamplePeriodic = "Sample.Periodic",
        TransactionBegin = "Transaction.Begin",
        TransactionEnd = "Transaction.End",
        Trigger,
        Other,
    }
}

enumeration! {
    /// StopTransaction.req reason.
    pub enum Reason {
        EmergencyStop,
        EVDisconnected,
        HardReset,
        Local,
        Other,
        PowerLoss,
        Reboot,
        Remote,
        SoftReset,
        UnlockCommand,
        DeAuthorized,
    }
}

enumeration! {
    /// ChargingProfile.recurrencyKind.
    pub enum RecurrencyKindType { Daily, Weekly }
}

enumeration! {
    /// BootNotification.conf status.
    pub enum RegistrationStatus { Accepted, Pending, Rejected }
}

enumeration! {
    /// RemoteStartTransaction.conf and RemoteStopTransaction.conf status.
    pub enum RemoteStartStopStatus { Accepted, Rejected }
}

enumeration! {
    /// ReserveNow.conf status.
    pub enum ReservationStatus { Accepted, Faulted, Occupied, Rejected, Unavailable }
}

enumeration! {
    /// Reset.conf status.
    pub enum ResetStatus { Accepted, Rejected }
}

enumeration! {
    /// Reset.req type.
    pub enum ResetType { Hard, Soft }
}

enumeration! {
    /// TriggerMessage.conf status; also ExtendedTriggerMessage.conf (same values).
    pub enum TriggerMessageStatus { Accepted, Rejected, NotImplemented }
}

enumeration! {
    /// SampledValue.unit. "Celcius" is the original misspelling, "Celsius" the errata's fix:
    /// both are accepted. "Hertz" is in the MeterValues schema only (StopTransaction rejects it).
    pub enum UnitOfMeasure {
        Wh,
        KWh = "kWh",
        Varh = "varh",
        Kvarh = "kvarh",
        W,
        KW = "kW",
        VA,
        KVA = "kVA",
        Var = "var",
        Kvar = "kvar",
        A,
        V,
        K,
        Celcius,
        Celsius,
        Fahrenheit,
        Percent,
        Hertz,
    }
}

enumeration! {
    /// UnlockConnector.conf status.
    pub enum UnlockStatus { Unlocked, UnlockFailed, NotSupported }
}

enumeration! {
    /// SendLocalList.conf status.
    pub enum UpdateStatus { Accepted, Failed, NotSupported, VersionMismatch }
}

enumeration! {
    /// SendLocalList.req updateType.
    pub enum UpdateType { Differential, Full }
}

enumeration! {
    /// SampledValue.format.
    pub enum ValueFormat { Raw, SignedData }
}

object! {
    /// An entry of SendLocalList.req localAuthorizationList.
    pub struct AuthorizationData {
        required "idTag" id_tag: IdToken,
        optional "idTagInfo" id_tag_info: IdTagInfo,
    }
}

object! {
    /// SetChargingProfile.req csChargingProfiles, RemoteStartTransaction.req chargingProfile.
    pub struct ChargingProfile {
        required "chargingProfileId" charging_profile_id: i64,
        optional "transactionId" transaction_id: i64,
        required "stackLevel" stack_level: i64,
        required "chargingProfilePurpose" charging_profile_purpose: ChargingProfilePurposeType,
        required "chargingProfileKind" charging_profile_kind: ChargingProfileKindType,
        optional "recurrencyKind" recurrency_kind: RecurrencyKindType,
        optional "validFrom" valid_from: DateTime,
        optional "validTo" valid_to: DateTime,
        required "chargingSchedule" charging_schedule: ChargingSchedule,
    }
}

object! {
    /// ChargingProfile.chargingSchedule, GetCompositeSchedule.conf chargingSchedule.
    pub struct ChargingSchedule {
        optional "duration" duration: i64,
        optional "startSchedule" start_schedule: DateTime,
        required "chargingRateUnit" charging_rate_unit: ChargingRateUnitType,
        required "chargingSchedulePeriod" charging_schedule_period: Vec<ChargingSchedulePeriod>,
        optional "minChargingRate" min_charging_rate: Decimal,
    }
}

object! {
    /// An entry of ChargingSchedule.chargingSchedulePeriod.
    pub struct ChargingSchedulePeriod {
        required "startPeriod" start_period: i64,
        required "limit" limit: Decimal,
        optional "numberPhases" number_phases: i64,
    }
}

object! {
    /// Authorize.conf, StartTransaction.conf, StopTransaction.conf idTagInfo; AuthorizationData.
    pub struct IdTagInfo {
        optional "expiryDate" expiry_date: DateTime,
        optional "parentIdTag" parent_id_tag: IdToken,
        required "status" status: AuthorizationStatus,
    }
}

object! {
    /// An entry of GetConfiguration.conf configurationKey.
    pub struct KeyValue {
        required "key" key: CiString<50>,
        required "readonly" readonly: bool,
        optional "value" value: CiString<500>,
    }
}

object! {
    /// MeterValues.req meterValue, StopTransaction.req transactionData. MeterValues also asks for
    /// at least one sampledValue (its own check does that); StopTransaction does not.
    pub struct MeterValue {
        required "timestamp" timestamp: DateTime,
        required "sampledValue" sampled_value: Vec<SampledValue>,
    }
}

object! {
    /// An entry of MeterValue.sampledValue.
    pub struct SampledValue {
        required "value" value: String,
        optional "context" context: ReadingContext,
        optional "format" format: ValueFormat,
        optional "measurand" measurand: Measurand,
        optional "phase" phase: Phase,
        optional "location" location: Location,
        optional "unit" unit: UnitOfMeasure,
    }
}
