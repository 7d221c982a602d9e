//! What a file is, from its first bytes rather than its name: images, video, audio,
//! 3D scene files, model weights, or other. The name only breaks ties between formats
//! that share a container (and is never trusted against the bytes).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Video,
    Audio,
    Scene,
    Model,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Video => "video",
            Kind::Audio => "audio",
            Kind::Scene => "scene",
            Kind::Model => "model",
            Kind::Other => "other",
        }
    }
}

/// How many leading bytes `detect` wants to see.
pub const SNIFF_LEN: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    pub kind: Kind,
    pub mime: &'static str,
}

fn found(kind: Kind, mime: &'static str) -> Option<Detected> {
    Some(Detected { kind, mime })
}

/// Identifies `head` (the first bytes of the file); `name` only disambiguates.
pub fn detect(head: &[u8], name: &str) -> Detected {
    sniff(head, &extension(name)).unwrap_or(Detected {
        kind: Kind::Other,
        mime: "application/octet-stream",
    })
}

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default()
}

fn sniff(b: &[u8], ext: &str) -> Option<Detected> {
    let at = |offset: usize, magic: &[u8]| {
        b.len() >= offset + magic.len() && &b[offset..offset + magic.len()] == magic
    };
    // Images.
    if at(0, b"\xFF\xD8\xFF") {
        return found(Kind::Image, "image/jpeg");
    }
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return found(Kind::Image, "image/png");
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return found(Kind::Image, "image/gif");
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return found(Kind::Image, "image/webp");
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") {
        return found(Kind::Image, "image/tiff");
    }
    if at(0, b"\x76\x2F\x31\x01") {
        return found(Kind::Image, "image/x-exr");
    }
    if at(0, b"BM") && b.len() > 14 && ext == "bmp" {
        return found(Kind::Image, "image/bmp");
    }
    // ISO base media (MP4, MOV, HEIC, AVIF, M4A).
    if at(4, b"ftyp") {
        let brand = b.get(8..12).unwrap_or_default();
        return match brand {
            b"heic" | b"heix" | b"mif1" | b"msf1" => found(Kind::Image, "image/heic"),
            b"avif" | b"avis" => found(Kind::Image, "image/avif"),
            b"M4A " | b"M4B " => found(Kind::Audio, "audio/mp4"),
            b"qt  " => found(Kind::Video, "video/quicktime"),
            _ => found(Kind::Video, "video/mp4"),
        };
    }
    if at(4, b"moov") || at(4, b"mdat") || at(4, b"wide") {
        return found(Kind::Video, "video/quicktime");
    }
    if at(0, b"\x1A\x45\xDF\xA3") {
        let webm = b.windows(4).any(|w| w == b"webm");
        return if webm {
            found(Kind::Video, "video/webm")
        } else {
            found(Kind::Video, "video/x-matroska")
        };
    }
    if at(0, b"RIFF") && at(8, b"AVI ") {
        return found(Kind::Video, "video/x-msvideo");
    }
    if b.len() >= 377 && b[0] == 0x47 && b[188] == 0x47 && b[376] == 0x47 {
        return found(Kind::Video, "video/mp2t");
    }
    if at(0, b"\x00\x00\x01\xBA") {
        return found(Kind::Video, "video/mpeg");
    }
    // Audio.
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return found(Kind::Audio, "audio/wav");
    }
    if at(0, b"fLaC") {
        return found(Kind::Audio, "audio/flac");
    }
    if at(0, b"OggS") {
        let video = b.windows(6).any(|w| w == b"theora");
        return if video {
            found(Kind::Video, "video/ogg")
        } else {
            found(Kind::Audio, "audio/ogg")
        };
    }
    if at(0, b"ID3") || (b.len() >= 2 && b[0] == 0xFF && (b[1] & 0xE0) == 0xE0 && ext == "mp3") {
        return found(Kind::Audio, "audio/mpeg");
    }
    if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        return found(Kind::Audio, "audio/aiff");
    }
    // 3D and scenes.
    if at(0, b"BLENDER") {
        return found(Kind::Scene, "application/x-blender");
    }
    if at(0, b"glTF") {
        return found(Kind::Scene, "model/gltf-binary");
    }
    if at(0, b"Kaydara FBX Binary") {
        return found(Kind::Scene, "application/x-fbx");
    }
    if at(0, b"PXR-USDC") {
        return found(Kind::Scene, "model/vnd.usd");
    }
    if at(0, b"#usda") {
        return found(Kind::Scene, "model/vnd.usda");
    }
    // Model weights.
    if let Some(d) = safetensors(b) {
        return Some(d);
    }
    if at(0, b"PK\x03\x04") {
        // PyTorch saves zip archives holding `<name>/data.pkl`; USDZ is a zip as well.
        if b.windows(8).any(|w| w == b"data.pkl") {
            return found(Kind::Model, "application/x-pytorch");
        }
        if ext == "usdz" {
            return found(Kind::Scene, "model/vnd.usdz+zip");
        }
        return found(Kind::Other, "application/zip");
    }
    if b.len() >= 2
        && b[0] == 0x80
        && (2..=5).contains(&b[1])
        && matches!(ext, "ckpt" | "pt" | "pth" | "bin")
    {
        return found(Kind::Model, "application/x-pickle");
    }
    // Text formats: only when the bytes are text and the name agrees.
    if is_text(b) {
        let text = String::from_utf8_lossy(b);
        if ext == "gltf" && text.trim_start().starts_with('{') && text.contains("\"asset\"") {
            return found(Kind::Scene, "model/gltf+json");
        }
        if ext == "obj"
            && text
                .lines()
                .any(|l| l.starts_with("v ") || l.starts_with("f "))
        {
            return found(Kind::Scene, "model/obj");
        }
        if ext == "fbx" && text.contains("FBXHeaderExtension") {
            return found(Kind::Scene, "application/x-fbx");
        }
        return found(Kind::Other, "text/plain");
    }
    None
}

/// safetensors: an 8-byte little-endian header length, then a JSON header.
fn safetensors(b: &[u8]) -> Option<Detected> {
    let len = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    if len == 0 || len > 100 * 1024 * 1024 || b.get(8) != Some(&b'{') {
        return None;
    }
    let shown = &b[8..b.len().min(8 + len as usize)];
    let text = String::from_utf8_lossy(shown);
    (text.contains("\"dtype\"") || text.contains("__metadata__")).then_some(Detected {
        kind: Kind::Model,
        mime: "application/x-safetensors",
    })
}

fn is_text(b: &[u8]) -> bool {
    !b.is_empty() && std::str::from_utf8(&b[..b.len().min(SNIFF_LEN)]).is_ok() && !b.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_video_and_audio_are_known_by_their_bytes() {
        assert_eq!(
            detect(b"\xFF\xD8\xFF\xE0rest", "x.png").mime,
            "image/jpeg",
            "bytes beat the name"
        );
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n....", "a").kind, Kind::Image);
        assert_eq!(detect(b"\0\0\0\x20ftypisom\0\0", "clip").mime, "video/mp4");
        assert_eq!(
            detect(b"\0\0\0\x14ftypqt  ", "clip").mime,
            "video/quicktime"
        );
        assert_eq!(detect(b"\x1A\x45\xDF\xA3....webm", "c").mime, "video/webm");
        assert_eq!(detect(b"RIFF\0\0\0\0WAVEfmt ", "s").kind, Kind::Audio);
        assert_eq!(detect(b"ID3\x04", "s").mime, "audio/mpeg");
    }

    #[test]
    fn scenes_and_weights_are_recognised() {
        assert_eq!(detect(b"BLENDER-v300", "shot.blend").kind, Kind::Scene);
        assert_eq!(detect(b"glTF\x02\0\0\0", "m.glb").mime, "model/gltf-binary");
        assert_eq!(
            detect(b"{\"asset\":{\"version\":\"2.0\"}}", "m.gltf").kind,
            Kind::Scene
        );
        assert_eq!(
            detect(b"# cube\nv 0 0 0\nf 1 2 3\n", "cube.obj").mime,
            "model/obj"
        );
        let header = br#"{"w":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#;
        let mut st = (header.len() as u64).to_le_bytes().to_vec();
        st.extend_from_slice(header);
        assert_eq!(detect(&st, "lora.safetensors").kind, Kind::Model);
        assert_eq!(
            detect(b"PK\x03\x04....archive/data.pkl", "model.pt").kind,
            Kind::Model
        );
        assert_eq!(detect(b"\x80\x02}q\0", "sd.ckpt").kind, Kind::Model);
    }

    #[test]
    fn a_name_that_contradicts_the_bytes_does_not_win() {
        assert_eq!(detect(b"just some notes", "movie.mp4").kind, Kind::Other);
        assert_eq!(
            detect(b"\0\x01\x02garbage", "weights.safetensors").kind,
            Kind::Other
        );
        assert_eq!(detect(b"v 1 2 3", "notes.txt").mime, "text/plain");
        assert_eq!(detect(b"", "empty.png").kind, Kind::Other);
    }
}
