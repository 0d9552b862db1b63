//! One vocabulary for two audiences. mcad's own hints name its flags and, beside each, the
//! library call that makes the same setting ("--nodes HOST:PORT,... (ClientBuilder::nodes in
//! the library)"); the library's messages, which mcad passes on, name library calls, so mcad
//! adds the flag that makes each one ("(with mcad: --tls-name NAME)").

/// The library calls the library's messages may name, and the mcad flags that make the same
/// setting. A message naming a call gets the flag added; a call without a flag gets nothing.
const FLAGS: &[(&str, &str)] = &[
    (
        "ClientBuilder::nodes",
        "--nodes HOST:PORT,... instead of an endpoint, on get, set, delete, stats and locate",
    ),
    ("ClientBuilder::serverless", "--serverless HOST:PORT"),
    ("TlsConfig::with_ca_pem", "--ca FILE"),
    ("TlsConfig::add_ca_pem", "--ca FILE"),
    ("TlsConfig::server_name", "--tls-name NAME"),
    ("TlsConfig::client_cert_pem", "--cert FILE --key FILE"),
    (
        "without ClientBuilder::tls",
        "leave out --tls, --ca, --tls-name and --cert",
    ),
];

/// `message`, with the mcad flags of the library calls it names: `message (with mcad: FLAG;
/// FLAG)`, or `message` as it is when it names none.
pub fn with_flags(message: String) -> String {
    let mut flags: Vec<&str> = Vec::new();
    for (call, flag) in FLAGS {
        if names_call(&message, call) && !flags.contains(flag) {
            flags.push(flag);
        }
    }
    if flags.is_empty() {
        message
    } else {
        format!("{message} (with mcad: {})", flags.join("; "))
    }
}

/// Whether `message` names `call` itself, not a longer name that starts with it.
fn names_call(message: &str, call: &str) -> bool {
    message.match_indices(call).any(|(at, _)| {
        let next = message[at + call.len()..].chars().next();
        !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The flag `flag` and the library call `call` it stands for, as mcad's hints write them.
pub fn flag(flag: &str, call: &str) -> String {
    format!("{flag} ({call} in the library)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_calls_get_their_flags() {
        assert_eq!(
            with_flags(
                "10.0.0.1:11211 does not support auto-discovery (...); for plain memcached use \
                 ClientBuilder::nodes([...])"
                    .into()
            ),
            "10.0.0.1:11211 does not support auto-discovery (...); for plain memcached use \
             ClientBuilder::nodes([...]) (with mcad: --nodes HOST:PORT,... instead of an \
             endpoint, on get, set, delete, stats and locate)"
        );
        assert_eq!(
            with_flags("set TlsConfig::server_name to a name the certificate carries".into()),
            "set TlsConfig::server_name to a name the certificate carries \
             (with mcad: --tls-name NAME)"
        );
        assert_eq!(
            with_flags(
                "trust it with TlsConfig::with_ca_pem (or add_ca_pem); TlsConfig::webpki_roots \
                 trusts only the public web PKI"
                    .into()
            ),
            "trust it with TlsConfig::with_ca_pem (or add_ca_pem); TlsConfig::webpki_roots \
             trusts only the public web PKI (with mcad: --ca FILE)"
        );
        assert!(
            with_flags("give one with TlsConfig::client_cert_pem".into())
                .ends_with("(with mcad: --cert FILE --key FILE)")
        );
        assert!(
            with_flags("use ClientBuilder::serverless(\"x\") instead".into())
                .ends_with("(with mcad: --serverless HOST:PORT)")
        );
        assert!(
            with_flags("build the client without ClientBuilder::tls".into())
                .ends_with("(with mcad: leave out --tls, --ca, --tls-name and --cert)")
        );
    }

    #[test]
    fn each_flag_once_and_nothing_for_calls_without_one() {
        let both = with_flags("TlsConfig::add_ca_pem: bad; TlsConfig::with_ca_pem too".into());
        assert_eq!(both.matches("--ca FILE").count(), 1, "{both}");
        for plain in [
            "raise ClientBuilder::max_nodes if the cluster really is that large",
            "ClientBuilder::nodes_extra is no call of the library",
            "node 10.0.0.1:11211: server error: SERVER_ERROR out of memory",
        ] {
            assert_eq!(with_flags(plain.into()), plain);
        }
    }

    #[test]
    fn own_hints_name_the_flag_and_the_call() {
        assert_eq!(
            flag("--nodes HOST:PORT,...", "ClientBuilder::nodes"),
            "--nodes HOST:PORT,... (ClientBuilder::nodes in the library)"
        );
    }
}
