//! A request frame, as a client would send it after the length prefix, into the broker's
//! request handler: decoding, validation and the handlers themselves must answer or close,
//! never panic, whatever the bytes.
//!
//! Input: [API index, version, body...]. The header is built here (with the header version
//! the API and version call for), so the fuzzer spends its time in request bodies rather than
//! rediscovering the header layout; raw header bytes are covered by the proptests in
//! src/broker/api/tests.rs.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use libfuzzer_sys::fuzz_target;
use rill::broker::api::{handle, SUPPORTED_APIS};
use rill::broker::session::Session;
use rill::broker::Broker;
use rill::config::BrokerConfig;

struct State {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    runtime: tokio::runtime::Runtime,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig {
            data_dir: Some(dir.path().to_path_buf()),
            ..BrokerConfig::default()
        };
        let broker = Broker::open(config, "127.0.0.1:9092".parse().expect("addr")).expect("broker");
        // Paused time: a Fetch long-poll completes at once instead of waiting its max_wait.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        State {
            _dir: dir,
            broker,
            runtime,
        }
    })
}

fn frame(data: &[u8]) -> Option<Bytes> {
    let (&api, rest) = data.split_first()?;
    let (&version, body) = rest.split_first()?;
    let (key, min, max) = SUPPORTED_APIS[usize::from(api) % SUPPORTED_APIS.len()];
    // Mostly served versions, sometimes one just outside the range.
    let span = (max - min + 3) as u8;
    let version = min - 1 + i16::from(version % span);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    let header_version = if (min..=max).contains(&version) {
        ApiKey::request_header_version(&key, version)
    } else {
        1
    };
    header.encode(&mut buf, header_version).ok()?;
    buf.put_slice(body);
    Some(buf.freeze())
}

fuzz_target!(|data: &[u8]| {
    let Some(frame) = frame(data) else { return };
    let state = state();
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("peer");
    // A fresh plaintext connection's session, as the listener makes one per connection.
    let mut session = Session::plaintext(peer, state.broker.advertised());
    let _ = state
        .runtime
        .block_on(handle(&state.broker, frame, &mut session));
});
