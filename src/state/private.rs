//! The file-system rules for private state, in one place: the state directory, the used-token
//! record, the signing key, the audit log and the secrets an operator keeps in files.
//!
//! Single use of a confirmation token rests on a marker file nobody else can delete, the audit
//! trail on a file nobody else can rewrite, and every token on a key nobody else can read. So on
//! Unix:
//! - directories we create are `0700`, files `0600`;
//! - an existing directory or file that group or other users may write is refused, with the
//!   `chmod` that fixes it, never used as found; a secret (the signing key, a token file) that
//!   they may read is refused too;
//! - nothing private is reached through a symbolic link: links are refused where we check, and
//!   files are opened with `O_NOFOLLOW`; a replaced file is renamed over, which replaces a link
//!   itself, not its target.
//!
//! Only the last component of a path is checked: the directories above the state directory
//! (a home directory, `/tmp` on macOS being a link) are the operator's business.
//!
//! On other platforms the same calls create and open files with the platform's defaults.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

/// Makes sure `path` is a private directory: creates it (and missing parents) `0700`, or
/// refuses an existing one that is a symbolic link, not a directory, or writable by group or
/// other users.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_dirs_private(path)?,
        Err(e) => return Err(context(path, e)),
    }
    // Checked after creating too: another process may have made it first.
    let meta = fs::symlink_metadata(path).map_err(|e| context(path, e))?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symbolic link{}, and private state is never kept behind one; point --state-dir at the real directory",
            path.display(),
            link_target(path)
        )));
    }
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory; remove it or choose another --state-dir",
            path.display()
        )));
    }
    refuse_writable_by_others(path, &meta, "700")
}

/// Creates `path` and any missing parents `0700`; directories that exist are left as they are.
pub fn create_dirs_private(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("could not create {}: {e}", path.display()),
        )
    })
}

/// Refuses an existing `path` that is a symbolic link, not a regular file, or writable by group
/// or other users. A missing file is fine: it will be created private.
pub fn check_private_file(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) => check_file(path, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(context(path, e)),
    }
}

/// Creates `path`, which must not exist yet (not even as a symbolic link), `0600`, for writing.
/// Of two processes creating the same path, exactly one succeeds; the other gets
/// [`io::ErrorKind::AlreadyExists`].
pub fn create_new_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    private(&mut options, 0);
    options.open(path)
}

/// Replaces `path` with `bytes` atomically: written to a new private file beside it, flushed to
/// disk, then renamed over `path`, so a reader sees the old content or the new, never half. A
/// symbolic link at `path` is replaced itself; its target is not touched.
pub fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = write_beside(path, bytes)?;
    let renamed = fs::rename(&tmp, path);
    if renamed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    renamed
}

/// Creates `path` holding `bytes`, whole or not at all: written to a new private file beside it,
/// flushed to disk, then hard-linked into place, which fails with
/// [`io::ErrorKind::AlreadyExists`] if `path` exists (as a file or a link). Of two processes
/// creating the same path, exactly one succeeds; and one that fails half way (a full disk)
/// leaves nothing at `path`, never an empty or partial file.
pub fn create_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = write_beside(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked
}

/// Writes `bytes` to a new private temporary file beside `path` (named `.<name>.<random>.tmp`,
/// so readers of the directory can skip it), flushed to disk, and returns its path. On failure
/// nothing is left behind.
fn write_beside(path: &Path, bytes: &[u8]) -> io::Result<std::path::PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let (tmp, mut file) = (0..8)
        .find_map(|_| {
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
            let tmp = path.with_file_name(tmp_name);
            match create_new_private(&tmp) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                opened => Some(opened.map(|file| (tmp, file))),
            }
        })
        .unwrap_or_else(|| {
            Err(io::Error::other(format!(
                "could not find a free temporary name beside {}",
                path.display()
            )))
        })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `path` (created `0600` if missing, never through a link) and returns the modification
/// time the file system stamped on it: the time of the machine (or file server) that keeps the
/// state directory, whatever this process believes the time is.
pub fn stamp(path: &Path) -> io::Result<std::time::SystemTime> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    private(&mut options, 0);
    let mut file = options.open(path).map_err(|e| explain_open(path, e))?;
    file.write_all(b"1nce-mcp clock probe\n")?;
    let meta = file.metadata()?;
    check_file(path, &meta)?;
    meta.modified()
}

/// Refuses an existing secret at `path` (a signing key) that is a symbolic link, not a regular
/// file, or that group or other users may read or write. A missing file is fine.
pub fn check_secret_file(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) => check_secret(path, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(context(path, e)),
    }
}

/// The 32-byte secret at `path` (never through a symbolic link, refused if others may read or
/// write it), created by `make` if it does not exist yet. Created whole or not at all (see
/// [`create_whole`]), so two processes starting at once end up with the same key and neither
/// reads a half-written one.
pub fn read_or_create_key(path: &Path, make: impl Fn() -> [u8; 32]) -> io::Result<[u8; 32]> {
    for _ in 0..3 {
        let mut options = OpenOptions::new();
        options.read(true);
        private(&mut options, 0);
        match options.open(path) {
            Ok(file) => {
                check_secret(path, &file.metadata()?)?;
                let mut bytes = Vec::with_capacity(33);
                file.take(33).read_to_end(&mut bytes)?;
                return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    io::Error::other(format!(
                        "{} is not a 32-byte key; delete it to create a new one (outstanding confirmation tokens become invalid)",
                        path.display()
                    ))
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create_whole(path, &make()) {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(context(path, e)),
            },
            Err(e) => return Err(explain_open(path, e)),
        }
    }
    Err(io::Error::other(format!(
        "could not read or create {}",
        path.display()
    )))
}

/// What [`read_or_create_private`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOrCreated {
    /// The file was there, holding these bytes.
    Read(Vec<u8>),
    /// It was not: this call created it, whole, with what `make` gave.
    Created,
}

/// The content of the private file at `path` (never through a symbolic link, refused if it is
/// not a regular file or others may write it, at most `max_bytes`), or, if it does not exist,
/// creates it whole with `make`'s bytes (see [`create_whole`]): of processes creating it at
/// once, one writes it and the others read what it wrote.
pub fn read_or_create_private(
    path: &Path,
    max_bytes: u64,
    make: impl Fn() -> Vec<u8>,
) -> io::Result<ReadOrCreated> {
    for _ in 0..3 {
        let mut options = OpenOptions::new();
        options.read(true);
        // O_NONBLOCK: a FIFO in the file's place fails the check below instead of hanging.
        #[cfg(unix)]
        private(&mut options, libc::O_NONBLOCK);
        #[cfg(not(unix))]
        private(&mut options, 0);
        match options.open(path) {
            Ok(file) => {
                check_file(path, &file.metadata()?)?;
                let mut bytes = Vec::new();
                file.take(max_bytes + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| context(path, e))?;
                if bytes.len() as u64 > max_bytes {
                    return Err(io::Error::other(format!(
                        "{} is larger than {max_bytes} bytes, which this server never writes",
                        path.display()
                    )));
                }
                return Ok(ReadOrCreated::Read(bytes));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create_whole(path, &make()) {
                Ok(()) => return Ok(ReadOrCreated::Created),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(context(path, e)),
            },
            Err(e) => return Err(explain_open(path, e)),
        }
    }
    Err(io::Error::other(format!(
        "could not read or create {}",
        path.display()
    )))
}

fn check_secret(path: &Path, meta: &Metadata) -> io::Result<()> {
    check_file(path, meta)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(io::Error::other(format!(
                "{} is a secret that other users can read (mode {:o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                shell_quote(path)
            )));
        }
    }
    Ok(())
}

/// Opens `path` for appending, creating it `0600`, without following a symbolic link, and
/// refuses the opened file if it is not a regular file or group or other users may write it.
pub fn open_append_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    // O_NONBLOCK: a FIFO put in the file's place fails the open instead of hanging the writer
    // (with the audit lock held) until someone reads it. Regular files ignore the flag.
    #[cfg(unix)]
    private(&mut options, libc::O_NONBLOCK);
    #[cfg(not(unix))]
    private(&mut options, 0);
    let file = options.open(path).map_err(|e| explain_open(path, e))?;
    check_file(path, &file.metadata()?)?;
    Ok(file)
}

/// Owner-only mode and `O_NOFOLLOW` (plus `extra` flags) for files we create or open.
/// Reads a secret the operator keeps in a file (the HTTP bearer token), at most `max_bytes`:
/// refuses a file group or other users may read or write (with the `chmod` that fixes it), and
/// reads through a bounded reader, so a device without end (`/dev/zero`) is refused once it
/// passes the limit instead of filling memory. Symbolic links are followed (secret mounts are
/// links); the mode checked is the target's.
pub fn read_secret_file(path: &Path, max_bytes: u64) -> io::Result<String> {
    use std::io::Read as _;
    let file = File::open(path).map_err(|e| context(path, e))?;
    let meta = file.metadata().map_err(|e| context(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let kind = meta.file_type();
        if kind.is_char_device() || kind.is_block_device() || kind.is_socket() || meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a regular file; put the secret in a file of its own",
                path.display()
            )));
        }
        let mode = meta.permissions().mode();
        if meta.is_file() && mode & 0o077 != 0 {
            return Err(io::Error::other(format!(
                "{} can be read or written by other users (mode {:o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                shell_quote(path)
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| context(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(io::Error::other(format!(
            "{} is larger than {max_bytes} bytes; it should hold the secret alone",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::other(format!("{} is not UTF-8 text", path.display())))
}

#[cfg_attr(not(unix), allow(unused_variables))]
fn private(options: &mut OpenOptions, extra: i32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW | extra);
    }
}

fn check_file(path: &Path, meta: &Metadata) -> io::Result<()> {
    if meta.file_type().is_symlink() {
        return Err(symlink_file(path));
    }
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file; remove it or choose another path",
            path.display()
        )));
    }
    refuse_writable_by_others(path, meta, "600")
}

#[cfg_attr(not(unix), allow(unused_variables))]
fn refuse_writable_by_others(path: &Path, meta: &Metadata, fix: &str) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(io::Error::other(format!(
                "{} is writable by other users (mode {:o}): run `chmod {fix} {}`",
                path.display(),
                mode & 0o777,
                shell_quote(path)
            )));
        }
    }
    Ok(())
}

/// An open refused because `path` is a symbolic link (`O_NOFOLLOW`) says so in words.
fn explain_open(path: &Path, e: io::Error) -> io::Error {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => symlink_file(path),
        _ => context(path, e),
    }
}

fn symlink_file(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a symbolic link{}, and private state is never written through one; use the real file's path or remove the link",
        path.display(),
        link_target(path)
    ))
}

/// ` (to TARGET)` when the link can be read, for the message.
fn link_target(path: &Path) -> String {
    fs::read_link(path)
        .map(|t| format!(" (to {})", t.display()))
        .unwrap_or_default()
}

fn context(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `path` as one shell word, so the suggested command can be pasted as it is.
#[cfg(unix)]
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::time::Duration;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn missing_directories_are_created_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        ensure_private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        // Existing and private: fine, and left as it is.
        chmod(&state, 0o755);
        ensure_private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o755);
    }

    #[test]
    fn directories_others_can_write_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        for bad in [0o777, 0o770, 0o702, 0o1777] {
            chmod(&state, bad);
            let err = ensure_private_dir(&state).unwrap_err().to_string();
            assert!(err.contains(&state.display().to_string()), "{err}");
            assert!(err.contains("writable by other users"), "{err}");
            assert!(
                err.contains(&format!("`chmod 700 {}`", state.display())),
                "{err}"
            );
            // Refused, not repaired behind the operator's back.
            assert_eq!(mode(&state), bad & 0o777);
        }
        chmod(&state, 0o777);
        assert!(
            ensure_private_dir(&state)
                .unwrap_err()
                .to_string()
                .contains("(mode 777)")
        );
    }

    #[test]
    fn a_directory_behind_a_symlink_or_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        chmod(&real, 0o700);
        let link = dir.path().join("link");
        symlink(&real, &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(
            err.contains("point --state-dir at the real directory"),
            "{err}"
        );
        // A dangling link is not created through either.
        let dangling = dir.path().join("dangling");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(ensure_private_dir(&dangling).is_err());
        assert!(!dir.path().join("nowhere").exists());

        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let err = ensure_private_dir(&file).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn private_files_are_checked_when_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        check_private_file(&file).unwrap();
        fs::write(&file, "x").unwrap();
        for fine in [0o600, 0o644, 0o400] {
            chmod(&file, fine);
            check_private_file(&file).unwrap();
        }
        for bad in [0o666, 0o620, 0o602] {
            chmod(&file, bad);
            let err = check_private_file(&file).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`chmod 600 {}`", file.display())),
                "{err}"
            );
        }
        chmod(&file, 0o600);
        let link = dir.path().join("link");
        symlink(&file, &link).unwrap();
        let err = check_private_file(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        let err = check_private_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a regular file"), "{err}");
    }

    #[test]
    fn new_private_files_are_0600_exclusive_and_never_follow_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        create_new_private(&marker)
            .unwrap()
            .write_all(b"posting\n")
            .unwrap();
        assert_eq!(mode(&marker), 0o600);
        assert_eq!(
            create_new_private(&marker).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let target = dir.path().join("target");
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        assert!(create_new_private(&link).is_err());
        assert!(!target.exists(), "nothing created through the link");
    }

    #[test]
    fn replacing_writes_a_private_file_and_replaces_a_link_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        fs::write(&marker, "posting\n").unwrap();
        chmod(&marker, 0o644);
        replace_private(&marker, b"placed 7\n").unwrap();
        assert_eq!(fs::read_to_string(&marker).unwrap(), "placed 7\n");
        assert_eq!(mode(&marker), 0o600);

        let target = dir.path().join("elsewhere");
        fs::write(&target, "untouched").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        replace_private(&link, b"unknown\n").unwrap();
        assert!(
            !fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&link).unwrap(), "unknown\n");
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");

        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }

    #[test]
    fn appending_creates_0600_and_refuses_files_others_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        open_append_private(&log)
            .unwrap()
            .write_all(b"1\n")
            .unwrap();
        open_append_private(&log)
            .unwrap()
            .write_all(b"2\n")
            .unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), "1\n2\n");
        assert_eq!(mode(&log), 0o600);

        chmod(&log, 0o666);
        let err = open_append_private(&log).unwrap_err().to_string();
        assert!(err.contains("writable by other users (mode 666)"), "{err}");
        assert!(
            err.contains(&format!("`chmod 600 {}`", log.display())),
            "{err}"
        );

        chmod(&log, 0o600);
        let link = dir.path().join("link.jsonl");
        symlink(&log, &link).unwrap();
        let err = open_append_private(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&log).unwrap(), "1\n2\n");

        assert!(open_append_private(dir.path()).is_err());
    }

    #[test]
    fn appending_to_a_fifo_fails_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("audit.jsonl");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: mkfifo is not available");
            return;
        }
        // Without a reader an O_WRONLY open of a FIFO would block forever.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || tx.send(open_append_private(&path).is_err()).unwrap());
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
    }

    #[test]
    fn a_key_is_created_whole_and_refused_when_others_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("confirmation.key");
        let made = read_or_create_key(&key, || [7; 32]).unwrap();
        assert_eq!(made, [7; 32]);
        assert_eq!(mode(&key), 0o600);
        // Read back, not made again.
        assert_eq!(read_or_create_key(&key, || [8; 32]).unwrap(), [7; 32]);
        chmod(&key, 0o640);
        for err in [
            read_or_create_key(&key, || [8; 32]).unwrap_err(),
            check_secret_file(&key).unwrap_err(),
        ] {
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        chmod(&key, 0o600);
        let link = dir.path().join("link.key");
        symlink(&key, &link).unwrap();
        let err = read_or_create_key(&link, || [8; 32]).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        fs::write(dir.path().join("short.key"), b"short").unwrap();
        chmod(&dir.path().join("short.key"), 0o600);
        let err = read_or_create_key(&dir.path().join("short.key"), || [8; 32]).unwrap_err();
        assert!(err.to_string().contains("32-byte"), "{err}");
    }

    #[test]
    fn a_small_private_file_is_read_or_created_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("account");
        let made = || b"first\n".to_vec();
        assert_eq!(
            read_or_create_private(&path, 16, made).unwrap(),
            ReadOrCreated::Created
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            read_or_create_private(&path, 16, || b"second\n".to_vec()).unwrap(),
            ReadOrCreated::Read(b"first\n".to_vec())
        );
        // Readable by others is fine (nothing secret); writable is not.
        chmod(&path, 0o644);
        assert!(read_or_create_private(&path, 16, made).is_ok());
        chmod(&path, 0o666);
        let err = read_or_create_private(&path, 16, made).unwrap_err();
        assert!(err.to_string().contains("`chmod 600"), "{err}");
        chmod(&path, 0o600);
        let err = read_or_create_private(&path, 3, made).unwrap_err();
        assert!(err.to_string().contains("larger than 3 bytes"), "{err}");
        // Never through a link, nor created through a dangling one.
        let link = dir.path().join("link");
        symlink(dir.path().join("nowhere"), &link).unwrap();
        let err = read_or_create_private(&link, 16, made).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!dir.path().join("nowhere").exists());
        // A FIFO in its place is refused, not waited on.
        let fifo = dir.path().join("fifo");
        if std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            let err = read_or_create_private(&fifo, 16, made).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }

    #[test]
    fn suggested_commands_quote_awkward_paths() {
        assert_eq!(shell_quote(Path::new("/x/state")), "/x/state");
        assert_eq!(shell_quote(Path::new("/my state")), "'/my state'");
        assert_eq!(shell_quote(Path::new("/it's")), r"'/it'\''s'");
    }
}

/// Opens the SQLite database `what` (e.g. "the order mirror") at `path` in the state directory,
/// created owner-only before SQLite opens it (its journal files take the same mode) and refused
/// if others may write it or it is a link, then runs `setup` (pragmas and schema) on it.
pub(super) fn open_sqlite(
    path: &Path,
    what: &str,
    setup: &str,
) -> Result<rusqlite::Connection, super::StateError> {
    match create_new_private(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(super::StateError::Files(format!(
                "could not create {what} {}: {e}",
                path.display()
            )));
        }
    }
    check_private_file(path)
        .map_err(|e| super::StateError::Refused(format!("refusing {what}: {e}")))?;
    let failed =
        |e: rusqlite::Error| super::StateError::Files(format!("{what} {}: {e}", path.display()));
    let db = rusqlite::Connection::open(path).map_err(failed)?;
    db.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(failed)?;
    db.execute_batch(setup).map_err(failed)?;
    Ok(db)
}
