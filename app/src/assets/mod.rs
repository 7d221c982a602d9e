//! Assets as the browser sees them: library cards, details, versions and media facts,
//! the library and asset pages, and the resumable upload client.

mod api;
mod pages;
mod upload;

pub use api::*;
pub use pages::*;
pub use upload::{provide_uploads, use_uploads, Uploads};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What ffprobe found in a media file. Fields are absent when the file lacks them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub duration_seconds: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub bit_rate: Option<u64>,
    pub audio_channels: Option<u32>,
}

/// Human-readable byte counts (binary units, one decimal).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1:02:03` or `2:05` from seconds.
pub fn format_duration(seconds: f64) -> String {
    let total = seconds.round().max(0.0) as u64;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

text_state! {
    /// An asset's or a version's state (`assets.state`, `asset_versions.state`): its
    /// bytes arriving, being probed and previewed, usable, or refused with a reason.
    AssetState {
        Uploading => "uploading",
        Processing => "processing",
        Ready => "ready",
        Failed => "failed",
    }
}

text_state! {
    /// A tus upload's state (`uploads.state`).
    UploadState {
        Receiving => "receiving",
        Complete => "complete",
        Terminated => "terminated",
        Expired => "expired",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssetCard {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub state: AssetState,
    pub failure: Option<String>,
    pub owner_email: String,
    pub tags: Vec<String>,
    pub size: Option<i64>,
    pub has_thumbnail: bool,
    pub created_at: DateTime<Utc>,
    /// The newest version's upload while it is unfinished on the server.
    #[serde(default)]
    pub pending_upload: Option<PendingUpload>,
}

/// An upload the server is still receiving: how far it got, and what it needs to go on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingUpload {
    pub upload_id: Uuid,
    /// Who is uploading (only they can continue it).
    pub uploader: Uuid,
    /// The name the file had when the upload started.
    pub file_name: String,
    pub received: i64,
    /// Absent while the client defers the length.
    pub length: Option<i64>,
    /// The version it makes (1: the asset's first upload).
    pub version: i32,
}

impl PendingUpload {
    /// Where the tus server keeps it.
    pub fn url(&self) -> String {
        format!("/api/uploads/{}", self.upload_id)
    }

    /// How much arrived, as a whole percent (rounded down: 100 only when complete).
    pub fn percent(&self) -> Option<u32> {
        let length = self.length.filter(|l| *l > 0)?;
        Some(
            ((self.received.max(0) as f64 / length as f64) * 100.0)
                .floor()
                .min(100.0) as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(format_duration(125.4), "2:05");
        assert_eq!(format_duration(3723.0), "1:02:03");
    }

    #[test]
    fn an_interrupted_upload_says_how_far_it_got() {
        let pending = |received, length| PendingUpload {
            upload_id: Uuid::nil(),
            uploader: Uuid::nil(),
            file_name: "plate.exr".into(),
            received,
            length,
            version: 1,
        };
        assert_eq!(pending(8 << 20, Some(20 << 20)).percent(), Some(40));
        assert_eq!(pending(999, Some(1000)).percent(), Some(99));
        assert_eq!(pending(5, None).percent(), None);
        assert_eq!(
            pending(0, Some(1)).url(),
            "/api/uploads/00000000-0000-0000-0000-000000000000"
        );
    }
}

/// One version of an asset, as its page lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub id: Uuid,
    pub number: i32,
    pub state: AssetState,
    pub failure: Option<String>,
    pub original_name: String,
    pub size: Option<i64>,
    pub mime: Option<String>,
    pub kind: Option<String>,
    pub sha256: Option<String>,
    pub media: Option<MediaInfo>,
    pub has_thumbnail: bool,
    pub has_proxy: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssetDetail {
    pub card: AssetCard,
    pub current: Option<VersionView>,
    /// Newest first.
    pub versions: Vec<VersionView>,
    /// Whether the caller may edit tags, add versions and delete (owner, lead, admin).
    pub can_edit: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    #[default]
    Newest,
    Oldest,
    Name,
}

impl Sort {
    pub fn parse(s: &str) -> Self {
        match s {
            "oldest" => Sort::Oldest,
            "name" => Sort::Name,
            _ => Sort::Newest,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::Name => "name",
        }
    }
}

/// Filters of the library; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryQuery {
    pub search: Option<String>,
    pub kind: Option<String>,
    pub owner: Option<String>,
    pub tag: Option<String>,
    pub state: Option<String>,
    pub sort: Sort,
    /// Keyset cursor from the previous page.
    pub after: Option<String>,
}

pub const LIBRARY_PAGE_SIZE: i64 = 48;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LibraryPage {
    pub items: Vec<AssetCard>,
    pub next: Option<String>,
}

/// Tags as people type them: trimmed, lower-cased, de-duplicated, at most 20 of 40 chars.
pub fn parse_tags(raw: &str) -> Result<Vec<String>, crate::error::AppError> {
    let mut tags: Vec<String> = Vec::new();
    for tag in raw
        .split(',')
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty())
    {
        if tag.chars().count() > 40 || tag.chars().any(char::is_control) {
            return Err(crate::error::AppError::invalid(format!(
                "The tag \"{tag}\" is too long or has control characters."
            )));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > 20 {
        return Err(crate::error::AppError::invalid(
            "An asset can have at most 20 tags.",
        ));
    }
    Ok(tags)
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn tags_are_normalised_and_bounded() {
        assert_eq!(
            parse_tags(" Hero, hero ,  night ,").unwrap(),
            ["hero", "night"]
        );
        assert!(parse_tags(&"x".repeat(41)).is_err());
        assert!(parse_tags(&(0..21).map(|i| i.to_string()).collect::<Vec<_>>().join(",")).is_err());
    }

    #[test]
    fn unknown_sorts_fall_back_to_newest() {
        assert_eq!(Sort::parse("name"), Sort::Name);
        assert_eq!(Sort::parse("bogus"), Sort::Newest);
    }
}
