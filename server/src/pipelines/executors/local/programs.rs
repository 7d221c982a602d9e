//! Which programs a local stage may run (an admin's list, resolved on `PATH` once) and as
//! whom (the stage user when Slate is root), with taking an attempt's directory back.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::process::StartError;

/// The programs allowed when the administrator has not configured a list.
pub const DEFAULT_PROGRAMS: &[&str] = &["ffmpeg", "ffprobe"];

/// Whom a stage's program runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// Slate's own user (Slate is not root).
    Current,
    /// An unprivileged user, given the attempt's directory for the run (Slate is root).
    User { name: String, uid: u32, gid: u32 },
    /// Slate is root and the configured user cannot be used: no program starts, and
    /// every attempt fails with this reason.
    Refused(String),
}

impl RunAs {
    /// From the `SLATE_STAGE_USER` setting: that user when Slate runs as root (warning
    /// once when it cannot be used), Slate's own user otherwise.
    pub fn for_setting(name: &str) -> RunAs {
        if !nix::unistd::geteuid().is_root() {
            return RunAs::Current;
        }
        let run_as = RunAs::named(name);
        if let RunAs::Refused(why) = &run_as {
            tracing::warn!(user = name, "local stages cannot run: {why}");
        }
        run_as
    }

    /// The user called `name`, which must exist and be neither root nor in root's group.
    pub fn named(name: &str) -> RunAs {
        let refused = |problem: &str| {
            RunAs::Refused(format!(
                "Slate runs as root, and local stages run as the stage user {name:?} \
                 (SLATE_STAGE_USER), but {problem}; set it to an unprivileged user"
            ))
        };
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) if user.uid.is_root() || user.gid.as_raw() == 0 => {
                refused("that user is root or in root's group")
            }
            Ok(Some(user)) => RunAs::User {
                name: name.to_owned(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            },
            _ => refused("that user does not exist"),
        }
    }

    /// Makes `workdir` and its `out/` the stage user's, after checking that the user can
    /// reach them. Nothing to do for [`RunAs::Current`].
    pub(super) fn give(&self, workdir: &Path) -> Result<(), StartError> {
        let RunAs::User { name, uid, gid } = self else {
            return Ok(());
        };
        let above = workdir.parent().unwrap_or(workdir);
        if !above.ancestors().all(|dir| searchable(dir, *uid, *gid)) {
            return Err(StartError::Unreachable {
                user: name.clone(),
                dir: workdir.to_owned(),
            });
        }
        for dir in [workdir.to_owned(), workdir.join("out")] {
            let real = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
            let given = if real {
                std::os::unix::fs::lchown(&dir, Some(*uid), Some(*gid))
            } else {
                Err(io::Error::other("it is not a directory"))
            };
            given.map_err(|source| StartError::GiveWorkdir { path: dir, source })?;
        }
        Ok(())
    }

    /// Takes `workdir` back from the stage user once its program has ended: top down, so
    /// that each directory is Slate's (and writable only by Slate) before what is in it is
    /// looked at, nothing can be swapped under the walk. Regular files and directories the
    /// stage user owns become Slate's with group and other write removed; everything else
    /// (symbolic links, hard links to files of other owners, pipes, sockets) is removed.
    /// Never follows a link.
    pub fn reclaim(&self, workdir: &Path) -> io::Result<()> {
        let RunAs::User { uid, .. } = self else {
            return Ok(());
        };
        use std::os::unix::fs::MetadataExt as _;
        let (me, my_group) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let take = |path: &Path, meta: &std::fs::Metadata| -> io::Result<()> {
            std::os::unix::fs::lchown(path, Some(me), Some(my_group))?;
            // Not a link (checked by the caller) in a directory only Slate can change.
            let mode = meta.mode() & 0o7777 & !0o022 & !0o6000;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        };
        let top = std::fs::symlink_metadata(workdir)?;
        if !top.is_dir() {
            return Err(io::Error::other("the working directory is not a directory"));
        }
        take(workdir, &top)?;
        let mut left = vec![workdir.to_owned()];
        while let Some(dir) = left.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                let meta = std::fs::symlink_metadata(&path)?;
                let kind = meta.file_type();
                let ours = meta.uid() == *uid || meta.uid() == me;
                if kind.is_dir() && ours {
                    take(&path, &meta)?;
                    left.push(path);
                } else if kind.is_file() && ours && (meta.nlink() == 1 || meta.uid() == *uid) {
                    take(&path, &meta)?;
                } else if kind.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }
}

/// Whether `uid` (in group `gid`, with no other groups) may pass through `dir`.
pub(super) fn searchable(dir: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = meta.mode();
    if meta.uid() == uid {
        mode & 0o100 != 0
    } else if meta.gid() == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

pub(super) fn allowed_list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The programs an administrator allowed, each resolved on `PATH` to an absolute path.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    programs: BTreeMap<String, PathBuf>,
    /// Allowed names that cannot run: not bare names, or not found on `PATH`. Kept so
    /// that running one says "not found" rather than "not allowed".
    missing: Vec<String>,
}

impl Allowed {
    /// Resolves `names` on the server's `PATH`.
    pub fn resolve(names: &[String]) -> Allowed {
        let path = std::env::var_os("PATH").unwrap_or_default();
        Allowed::resolve_in(names, &path)
    }

    /// Resolves `names` in the directories of `path` (a `PATH`-style list). Relative
    /// directories are skipped: what they point at depends on the current directory.
    pub fn resolve_in(names: &[String], path: &OsStr) -> Allowed {
        let mut allowed = Allowed::default();
        for name in names {
            let found = is_bare_name(name)
                .then(|| find_on_path(name, path))
                .flatten();
            match found {
                Some(program) => {
                    allowed.programs.insert(name.clone(), program);
                }
                None if !allowed.missing.contains(name) => allowed.missing.push(name.clone()),
                None => {}
            }
        }
        allowed
    }

    /// The absolute path of an allowed program, if it was found.
    pub fn get(&self, name: &str) -> Option<&Path> {
        self.programs.get(name).map(PathBuf::as_path)
    }

    /// The allowed programs that can run, sorted.
    pub fn names(&self) -> Vec<String> {
        self.programs.keys().cloned().collect()
    }

    /// The allowed names that cannot run (not a bare name, or not on `PATH`), for a
    /// warning at startup.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// The path to start for `name`, or why it must not start.
    pub(super) fn program_for(&self, name: &str) -> Result<&Path, StartError> {
        if !is_bare_name(name) {
            return Err(StartError::InvalidProgramName {
                name: name.to_owned(),
            });
        }
        if let Some(program) = self.get(name) {
            return Ok(program);
        }
        if self.missing.iter().any(|missing| missing == name) {
            return Err(StartError::NotFound {
                name: name.to_owned(),
            });
        }
        Err(StartError::NotAllowed {
            name: name.to_owned(),
            allowed: self.names(),
        })
    }
}

/// A bare name cannot point outside `PATH` (no `/`) and cannot be mistaken for a
/// command line (no whitespace).
pub(super) fn is_bare_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\0']) && !name.contains(char::is_whitespace)
}

pub(super) fn find_on_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

pub(super) fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
