//! The stage scripts Jobs run (`k8s/base/stage-scripts.yaml`), run here with the real
//! OpenCV (Debian's `python3-opencv`, under Debian's `/usr/bin/python3`; `scripts/setup
//! test` installs it) on media made with ffmpeg.

use std::path::Path;
use std::process::Command;

/// A script from the ConfigMap, written to `dir`.
fn script(name: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(slate_tests::root().join("k8s/base/stage-scripts.yaml"))
        .expect("the stage scripts");
    let map: serde_json::Value = serde_yaml::from_str(&text).expect("a ConfigMap");
    let body = map["data"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no script {name}"));
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn python(args: &[&str]) -> std::process::Output {
    Command::new("/usr/bin/python3")
        .args(args)
        .output()
        .expect("Debian's python3 (scripts/setup test installs python3-opencv)")
}

fn frames(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A directory removed at the end.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("slate-scripts-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_opencv_post_process_script_denoises_stabilises_and_grades_and_refuses_bad_input() {
    let dir = Scratch::new();
    let post = script("post_process.py", dir.path());
    let post = post.to_str().unwrap();
    let clip = dir.path().join("shaky.mov");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=1:size=192x108:rate=12,noise=alls=20:allf=t",
        "-c:v",
        "mpeg4",
        clip.to_str().unwrap(),
    ]);
    for operation in ["denoise", "stabilise", "grade"] {
        let out = dir.path().join(format!("{operation}.mp4"));
        let ran = python(&[
            post,
            "--input",
            clip.to_str().unwrap(),
            "--operation",
            operation,
            "--strength",
            "0.7",
            "--output",
            out.to_str().unwrap(),
        ]);
        let log = String::from_utf8_lossy(&ran.stdout);
        assert!(
            ran.status.success(),
            "{operation}: {log}{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert!(log.contains("frame 12 of 12"), "{log}");
        assert_eq!(frames(&out), "12", "{operation}: every frame, readable");
        assert_ne!(
            std::fs::read(&out).unwrap().len(),
            0,
            "{operation} wrote a video"
        );
    }
    // Bad input: a clear message and a failing status.
    let missing = python(&[
        post,
        "--input",
        "/nowhere/plate.mov",
        "--operation",
        "grade",
        "--output",
        "/tmp/never.mp4",
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nowhere/plate.mov"));
    let strong = python(&[
        post,
        "--input",
        clip.to_str().unwrap(),
        "--operation",
        "grade",
        "--strength",
        "3",
        "--output",
        "/tmp/never.mp4",
    ]);
    assert!(!strong.status.success());
    assert!(String::from_utf8_lossy(&strong.stderr).contains("--strength must be from 0 to 1"));
}
