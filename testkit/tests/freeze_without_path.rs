//! Freeze and thaw run no program: they work with nothing on `PATH`. (Alone in its test binary:
//! it changes the process's environment.)

use std::path::PathBuf;
use std::time::Duration;

use memcached_autodiscovery_testkit::{MemcachedOptions, MemcachedProcess};

/// The memcached binary as the kit finds it, resolved to a path while `PATH` is still set.
fn memcached_path() -> PathBuf {
    let named = std::env::var_os("MEMCACHED_BIN").unwrap_or_else(|| "memcached".into());
    let named = PathBuf::from(named);
    if named.components().count() > 1 {
        return named;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(&named))
        .find(|candidate| candidate.is_file())
        .expect("memcached on PATH (install it, or set MEMCACHED_BIN)")
}

#[test]
fn freeze_and_thaw_need_no_program_on_path() {
    let options = MemcachedOptions {
        binary: memcached_path(),
        ..MemcachedOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let process = runtime
        .block_on(MemcachedProcess::start(
            "127.0.0.1".parse().unwrap(),
            &options,
        ))
        .expect("memcached starts");
    let empty = std::env::temp_dir().join(format!("no-programs-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    // The only thread of this test binary that reads the environment is this one.
    std::env::set_var("PATH", &empty);
    let frozen = process.freeze();
    let thawed = process.thaw();
    std::fs::remove_dir(&empty).unwrap();
    frozen.expect("freeze with an empty PATH");
    thawed.expect("thaw with an empty PATH");
    // Still answering after the thaw.
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(process.addr())
            .await
            .unwrap();
        stream.write_all(b"version\r\n").await.unwrap();
        let mut reply = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply))
            .await
            .expect("an answer after the thaw")
            .unwrap();
        assert_eq!(&reply, b"VERSION ");
    });
}
