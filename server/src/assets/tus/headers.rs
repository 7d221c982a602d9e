//! Reading and writing the tus headers: version, numbers, `Upload-Metadata`,
//! `Upload-Checksum`, and the offset and expiry a response reports.

use app::assets::UploadState;
use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::Digest as _;

use super::error::{TusError, TusResult};
use super::{UploadRow, TUS_VERSION};

pub(super) fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn check_version(headers: &HeaderMap) -> TusResult<()> {
    match text(headers, "tus-resumable") {
        Some(TUS_VERSION) => Ok(()),
        Some(other) => Err(TusError::new(
            412,
            format!("Tus-Resumable {other} is not supported; use {TUS_VERSION}."),
        )),
        None => Err(TusError::new(412, "The Tus-Resumable header is missing.")),
    }
}

pub(super) fn number(headers: &HeaderMap, name: &str) -> TusResult<Option<u64>> {
    text(headers, name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| TusError::new(400, format!("{name} must be a non-negative integer.")))
        })
        .transpose()
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent).
pub fn parse_metadata(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.split(' ');
        let key = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        if key.is_empty() || parts.next().is_some() {
            return Err(format!(
                "Upload-Metadata pair \"{pair}\" is not \"key base64value\"."
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| format!("Upload-Metadata value for \"{key}\" is not valid base64."))?;
        out.insert(key.to_owned(), String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(out)
}

pub(super) fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub(super) fn upload_headers(res: &mut Response, row: &UploadRow, offset: u64) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&offset.to_string()) {
        h.insert("upload-offset", v);
    }
    if row.state == UploadState::Receiving {
        if let Ok(v) = HeaderValue::from_str(&http_date(row.expires_at)) {
            h.insert("upload-expires", v);
        }
    }
}

pub(super) enum Checksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
}

pub(super) fn parse_checksum(headers: &HeaderMap) -> TusResult<Option<Checksum>> {
    let Some(value) = text(headers, "upload-checksum") else {
        return Ok(None);
    };
    let (algo, digest) = value.trim().split_once(' ').ok_or_else(|| {
        TusError::new(
            400,
            "Upload-Checksum must be \"<algorithm> <base64 digest>\".",
        )
    })?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| TusError::new(400, "The Upload-Checksum digest is not valid base64."))?;
    match algo.to_ascii_lowercase().as_str() {
        "sha1" => Ok(Some(Checksum::Sha1(sha1::Sha1::new(), digest))),
        "sha256" => Ok(Some(Checksum::Sha256(sha2::Sha256::new(), digest))),
        other => Err(TusError::new(
            400,
            format!("Checksum algorithm \"{other}\" is not supported; use sha1 or sha256."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn metadata_pairs_decode_and_bad_base64_is_refused() {
        let m = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(m["filename"], "world_domination_plan.pdf");
        assert_eq!(m["is_confidential"], "");
        assert!(parse_metadata("filename not*base64").is_err());
        assert!(parse_metadata("a b c").is_err());
        assert!(parse_metadata("").unwrap().is_empty());
    }

    #[test]
    fn dates_are_rfc_7231() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T08:05:09Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(http_date(at), "Thu, 26 Nov 2026 08:05:09 GMT");
    }

    #[test]
    fn only_tus_1_0_0_is_spoken() {
        let mut h = HeaderMap::new();
        assert_eq!(
            check_version(&h).unwrap_err().0,
            StatusCode::PRECONDITION_FAILED
        );
        h.insert("tus-resumable", HeaderValue::from_static("0.2.2"));
        assert_eq!(
            check_version(&h).unwrap_err().0,
            StatusCode::PRECONDITION_FAILED
        );
        h.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
        assert!(check_version(&h).is_ok());
    }
}
