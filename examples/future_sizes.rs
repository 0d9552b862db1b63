//! The size in bytes of the future each call returns: what every concurrent caller holds and
//! moves on every poll chain. Nothing is sent (the futures are created and dropped unpolled).
//!
//! ```text
//! cargo run --release --example future_sizes
//! ```

use std::mem::size_of_val;
use std::time::Duration;

use bytes::Bytes;
use memcached_autodiscovery::Client;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), memcached_autodiscovery::Error> {
    // A static node list: `build` dials nothing.
    let client = Client::builder().nodes(["127.0.0.1:11211"]).build().await?;
    let ttl = Duration::from_secs(60);
    let keys = ["a", "b", "c"];
    let rows: [(&str, usize); 10] = [
        ("get", size_of_val(&client.get("key"))),
        ("gets", size_of_val(&client.gets("key"))),
        ("set", size_of_val(&client.set("key", "value", ttl))),
        ("add", size_of_val(&client.add("key", "value", ttl))),
        ("delete", size_of_val(&client.delete("key"))),
        ("incr", size_of_val(&client.incr("key", 1))),
        ("touch", size_of_val(&client.touch("key", ttl))),
        ("get_many", size_of_val(&client.get_many(keys))),
        (
            "get_or_load",
            size_of_val(&client.get_or_load("key", ttl, || async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"loaded"))
            })),
        ),
        ("invalidate", size_of_val(&client.invalidate("key", ttl))),
    ];
    for (call, bytes) in rows {
        println!("{call:<12} {bytes:>6} B");
    }
    Ok(())
}
