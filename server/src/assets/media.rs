//! ffprobe and ffmpeg, run as child processes: media facts, thumbnails and web proxies.
//! Failures carry ffmpeg's own words, which is what people need to see.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use app::assets::MediaInfo;
use serde_json::Value;
use tokio::process::Command;

/// Longest any one ffmpeg run may take before it is stopped.
const LIMIT: Duration = Duration::from_secs(3 * 60 * 60);

/// Runs `program`; `input` is named "the file" in messages (paths are not for users).
async fn run(program: &str, input: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program} could not be started: {e} (is ffmpeg installed?)"))?;
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "{program} took longer than {} minutes and was stopped",
                LIMIT.as_secs() / 60
            )
        })?
        .map_err(|e| format!("{program} failed: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .to_owned();
        Err(format!(
            "{program}: {}",
            reason.replace(&input.display().to_string(), "the file")
        ))
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// Runs ffprobe; the reason on failure is ffprobe's message.
pub async fn probe(file: &Path) -> Result<(MediaInfo, Value), String> {
    let out = run(
        "ffprobe",
        file,
        &[
            os("-v"),
            os("error"),
            os("-print_format"),
            os("json"),
            os("-show_format"),
            os("-show_streams"),
            file.as_os_str(),
        ],
    )
    .await?;
    let json: Value =
        serde_json::from_slice(&out).map_err(|e| format!("ffprobe gave unreadable output: {e}"))?;
    let info = media_info(&json);
    if json["streams"].as_array().is_none_or(|s| s.is_empty()) {
        return Err("ffprobe found no audio or video streams in the file".into());
    }
    Ok((info, json))
}

/// Reads the facts people look at out of ffprobe's JSON.
pub fn media_info(json: &Value) -> MediaInfo {
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"] != 1);
    let audio = streams.iter().find(|s| s["codec_type"] == "audio");
    let number = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    MediaInfo {
        duration_seconds: number(&json["format"]["duration"])
            .or_else(|| video.and_then(|v| number(&v["duration"]))),
        width: video.and_then(|v| v["width"].as_u64()).map(|w| w as u32),
        height: video.and_then(|v| v["height"].as_u64()).map(|h| h as u32),
        frame_rate: video
            .and_then(|v| v["avg_frame_rate"].as_str())
            .and_then(rate)
            .filter(|r| *r > 0.0),
        video_codec: video
            .and_then(|v| v["codec_name"].as_str())
            .map(str::to_owned),
        audio_codec: audio
            .and_then(|a| a["codec_name"].as_str())
            .map(str::to_owned),
        bit_rate: number(&json["format"]["bit_rate"]).map(|b| b as u64),
        audio_channels: audio.and_then(|a| a["channels"].as_u64()).map(|c| c as u32),
    }
}

/// "30000/1001" → 29.97.
fn rate(text: &str) -> Option<f64> {
    let (n, d) = text.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d != 0.0).then(|| (n / d * 1000.0).round() / 1000.0)
}

/// A JPEG at most 480 px wide: a frame at about 10 % of a video, or the image resized.
pub async fn thumbnail(input: &Path, duration: Option<f64>, out: &Path) -> Result<(), String> {
    let at = format!("{:.3}", duration.map(|d| d * 0.1).unwrap_or(0.0));
    let mut args: Vec<&std::ffi::OsStr> = vec![os("-v"), os("error"), os("-y")];
    if duration.is_some_and(|d| d > 0.5) {
        args.extend([os("-ss"), os(&at)]);
    }
    args.extend([
        os("-i"),
        input.as_os_str(),
        os("-frames:v"),
        os("1"),
        os("-vf"),
        os("scale='min(480,iw)':-2"),
        os("-q:v"),
        os("4"),
        out.as_os_str(),
    ]);
    run("ffmpeg", input, &args).await.map(drop)
}

/// A web-playable proxy: H.264/AAC MP4, at most 720 lines, moov atom first (faststart).
pub async fn proxy(input: &Path, has_audio: bool, out: &Path) -> Result<(), String> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        os("-v"),
        os("error"),
        os("-y"),
        os("-i"),
        input.as_os_str(),
        os("-vf"),
        os("scale=-2:'min(720,ih)',format=yuv420p"),
        os("-c:v"),
        os("libx264"),
        os("-preset"),
        os("veryfast"),
        os("-crf"),
        os("23"),
    ];
    if has_audio {
        args.extend([os("-c:a"), os("aac"), os("-b:a"), os("128k")]);
    } else {
        args.push(os("-an"));
    }
    args.extend([os("-movflags"), os("+faststart"), out.as_os_str()]);
    run("ffmpeg", input, &args).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn media_facts_come_from_ffprobe_json() {
        let probe = json!({
            "streams": [
                {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080, "avg_frame_rate": "30000/1001"},
                {"codec_type": "audio", "codec_name": "aac", "channels": 2}
            ],
            "format": {"duration": "12.480000", "bit_rate": "5000000"}
        });
        let info = media_info(&probe);
        assert_eq!(info.width, Some(1920));
        assert_eq!(info.frame_rate, Some(29.97));
        assert_eq!(info.duration_seconds, Some(12.48));
        assert_eq!(info.audio_channels, Some(2));
        assert_eq!(info.bit_rate, Some(5_000_000));
        assert_eq!(info.video_codec.as_deref(), Some("h264"));
    }

    #[test]
    fn frame_rates_parse_safely() {
        assert_eq!(rate("25/1"), Some(25.0));
        assert_eq!(rate("0/0"), None);
        assert_eq!(rate("junk"), None);
    }
}
