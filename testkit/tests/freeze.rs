//! `MemcachedProcess::freeze` and `thaw` against a real memcached: the kit sends SIGSTOP and
//! SIGCONT itself, and a frozen process keeps its sockets open but answers nothing.

use std::net::SocketAddr;
use std::time::Duration;

use memcached_autodiscovery_testkit::{MemcachedOptions, MemcachedProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The scheduler state letter of every thread of `pid` (`T`: stopped).
fn thread_states(pid: u32) -> Vec<char> {
    let mut states = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (_, rest) = stat.rsplit_once(')').unwrap();
        states.extend(rest.trim_start().chars().next());
    }
    states
}

/// Sends `version` and reads what comes back within `wait`: `None` when nothing does.
async fn ask_version(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    stream.write_all(b"version\r\n").await.unwrap();
    read_line(stream, wait).await
}

async fn read_line(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut line = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            assert_ne!(stream.read(&mut byte).await.unwrap(), 0, "closed");
            line.push(byte[0]);
        }
    };
    timeout(wait, read).await.ok()?;
    Some(String::from_utf8(line).unwrap())
}

async fn start() -> MemcachedProcess {
    MemcachedProcess::start("127.0.0.1".parse().unwrap(), &MemcachedOptions::default())
        .await
        .expect("memcached starts (install it, or set MEMCACHED_BIN)")
}

#[tokio::test]
async fn a_frozen_process_answers_nothing_until_thawed() {
    let mut process = start().await;
    let pid = process.pid().unwrap();
    let addr: SocketAddr = process.addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let answer = ask_version(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.is_some_and(|a| a.starts_with("VERSION ")));

    process.freeze().expect("freeze");
    let states = thread_states(pid);
    assert!(states.iter().all(|&s| s == 'T'), "not stopped: {states:?}");
    assert!(process.is_running(), "a frozen process has not exited");
    assert_eq!(
        ask_version(&mut stream, Duration::from_millis(300)).await,
        None,
        "a frozen process answered"
    );
    // Its port still accepts connections (the kernel's backlog), as a frozen node's does.
    let mut other = timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .expect("the listen socket is still open")
        .unwrap();

    process.thaw().expect("thaw");
    assert!(thread_states(pid).iter().all(|&s| s != 'T'));
    // The request sent while frozen is answered now, and new ones too.
    let late = read_line(&mut stream, Duration::from_secs(5)).await;
    assert!(late.is_some_and(|a| a.starts_with("VERSION ")));
    let answer = ask_version(&mut other, Duration::from_secs(5)).await;
    assert!(answer.is_some_and(|a| a.starts_with("VERSION ")));

    // Thawing a running process, and freezing or thawing a killed one, change nothing.
    process.thaw().expect("thaw a running process");
    process.kill();
    process.freeze().expect("freeze after kill: nothing to do");
    process.thaw().expect("thaw after kill: nothing to do");
}

#[tokio::test]
async fn a_frozen_process_is_killed_and_reaped_when_dropped() {
    let process = start().await;
    let pid = process.pid().unwrap();
    process.freeze().expect("freeze");
    drop(process);
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "memcached {pid} outlived its handle"
    );
}
