//! The payloads of the 11 actions the OCPP 1.6 security whitepaper (edition 2) adds, with the
//! data types only they use. The whitepaper names its types `...EnumType` / `...Type`; here the
//! suffix is dropped, and two names that would clash with core types get a prefix:
//! `ExtendedMessageTrigger` (MessageTriggerEnumType) and `SignedFirmwareStatus`
//! (FirmwareStatusEnumType). TriggerMessageStatusEnumType has the core TriggerMessageStatus's
//! values and is that type.

use super::datatypes::TriggerMessageStatus;
use super::primitives::{CiString, DateTime, NonEmpty};

enumeration! {
    /// CertificateSigned.conf status.
    pub enum CertificateSignedStatus { Accepted, Rejected }
}

enumeration! {
    /// GetInstalledCertificateIds.req and InstallCertificate.req certificateType.
    pub enum CertificateUse { CentralSystemRootCertificate, ManufacturerRootCertificate }
}

enumeration! {
    /// DeleteCertificate.conf status.
    pub enum DeleteCertificateStatus { Accepted, Failed, NotFound }
}

enumeration! {
    /// ExtendedTriggerMessage.req requestedMessage (MessageTriggerEnumType).
    pub enum ExtendedMessageTrigger {
        BootNotification,
        LogStatusNotification,
        FirmwareStatusNotification,
        Heartbeat,
        MeterValues,
        SignChargePointCertificate,
        StatusNotification,
    }
}

enumeration! {
    /// SignCertificate.conf status.
    pub enum GenericStatus { Accepted, Rejected }
}

enumeration! {
    /// GetInstalledCertificateIds.conf status.
    pub enum GetInstalledCertificateStatus { Accepted, NotFound }
}

enumeration! {
    /// CertificateHashData.hashAlgorithm.
    pub enum HashAlgorithm { SHA256, SHA384, SHA512 }
}

enumeration! {
    /// InstallCertificate.conf status.
    pub enum InstallCertificateStatus { Accepted, Failed, Rejected }
}

enumeration! {
    /// GetLog.conf status.
    pub enum LogStatus { Accepted, Rejected, AcceptedCanceled }
}

enumeration! {
    /// GetLog.req logType (LogEnumType).
    pub enum LogType { DiagnosticsLog, SecurityLog }
}

enumeration! {
    /// SignedFirmwareStatusNotification.req status (FirmwareStatusEnumType).
    pub enum SignedFirmwareStatus {
        Downloaded,
        DownloadFailed,
        Downloading,
        DownloadScheduled,
        DownloadPaused,
        Idle,
        InstallationFailed,
        Installing,
        Installed,
        InstallRebooting,
        InstallScheduled,
        InstallVerificationFailed,
        InvalidSignature,
        SignatureVerified,
    }
}

enumeration! {
    /// SignedUpdateFirmware.conf status.
    pub enum UpdateFirmwareStatus {
        Accepted,
        Rejected,
        AcceptedCanceled,
        InvalidCertificate,
        RevokedCertificate,
    }
}

enumeration! {
    /// LogStatusNotification.req status.
    pub enum UploadLogStatus {
        BadMessage,
        Idle,
        NotSupportedOperation,
        PermissionDenied,
        Uploaded,
        UploadFailure,
        Uploading,
    }
}

object! {
    /// Identifies an installed certificate (CertificateHashDataType).
    pub struct CertificateHashData {
        required "hashAlgorithm" hash_algorithm: HashAlgorithm,
        required "issuerNameHash" issuer_name_hash: CiString<128>,
        required "issuerKeyHash" issuer_key_hash: CiString<128>,
        required "serialNumber" serial_number: CiString<40>,
    }
}

object! {
    /// SignedUpdateFirmware.req firmware (FirmwareType).
    pub struct Firmware {
        required "location" location: CiString<512>,
        required "retrieveDateTime" retrieve_date_time: DateTime,
        optional "installDateTime" install_date_time: DateTime,
        required "signingCertificate" signing_certificate: CiString<5500>,
        required "signature" signature: CiString<800>,
    }
}

object! {
    /// GetLog.req log (LogParametersType).
    pub struct LogParameters {
        required "remoteLocation" remote_location: CiString<512>,
        optional "oldestTimestamp" oldest_timestamp: DateTime,
        optional "latestTimestamp" latest_timestamp: DateTime,
    }
}

object! {
    pub struct CertificateSignedRequest {
        required "certificateChain" certificate_chain: CiString<10000>,
    }
}

object! {
    pub struct CertificateSignedResponse {
        required "status" status: CertificateSignedStatus,
    }
}

object! {
    pub struct DeleteCertificateRequest {
        required "certificateHashData" certificate_hash_data: CertificateHashData,
    }
}

object! {
    pub struct DeleteCertificateResponse {
        required "status" status: DeleteCertificateStatus,
    }
}

object! {
    pub struct ExtendedTriggerMessageRequest {
        required "requestedMessage" requested_message: ExtendedMessageTrigger,
        optional "connectorId" connector_id: i64,
    }
}

object! {
    pub struct ExtendedTriggerMessageResponse {
        required "status" status: TriggerMessageStatus,
    }
}

object! {
    pub struct GetInstalledCertificateIdsRequest {
        required "certificateType" certificate_type: CertificateUse,
    }
}

object! {
    pub struct GetInstalledCertificateIdsResponse {
        optional "certificateHashData" certificate_hash_data: NonEmpty<CertificateHashData>,
        required "status" status: GetInstalledCertificateStatus,
    }
}

object! {
    pub struct GetLogRequest {
        required "log" log: LogParameters,
        required "logType" log_type: LogType,
        required "requestId" request_id: i64,
        optional "retries" retries: i64,
        optional "retryInterval" retry_interval: i64,
    }
}

object! {
    pub struct GetLogResponse {
        required "status" status: LogStatus,
        optional "filename" filename: CiString<255>,
    }
}

object! {
    pub struct InstallCertificateRequest {
        required "certificateType" certificate_type: CertificateUse,
        required "certificate" certificate: CiString<5500>,
    }
}

object! {
    pub struct InstallCertificateResponse {
        required "status" status: InstallCertificateStatus,
    }
}

object! {
    pub struct LogStatusNotificationRequest {
        required "status" status: UploadLogStatus,
        optional "requestId" request_id: i64,
    }
}

object! {
    pub struct LogStatusNotificationResponse {}
}

object! {
    pub struct SecurityEventNotificationRequest {
        required "type" r#type: CiString<50>,
        required "timestamp" timestamp: DateTime,
        optional "techInfo" tech_info: CiString<255>,
    }
}

object! {
    pub struct SecurityEventNotificationResponse {}
}

object! {
    pub struct SignCertificateRequest {
        required "csr" csr: CiString<5500>,
    }
}

object! {
    pub struct SignCertificateResponse {
        required "status" status: GenericStatus,
    }
}

object! {
    pub struct SignedFirmwareStatusNotificationRequest {
        required "status" status: SignedFirmwareStatus,
        optional "requestId" request_id: i64,
    }
}

object! {
    pub struct SignedFirmwareStatusNotificationResponse {}
}

object! {
    pub struct SignedUpdateFirmwareRequest {
        optional "retries" retries: i64,
        optional "retryInterval" retry_interval: i64,
        required "requestId" request_id: i64,
        required "firmware" firmware: Firmware,
    }
}

object! {
    pub struct SignedUpdateFirmwareResponse {
        required "status" status: UpdateFirmwareStatus,
    }
}
