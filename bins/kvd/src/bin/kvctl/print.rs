//! How kvctl prints answers: etcdctl's simple format, or the server's JSON.

use std::io::{self, Write};

use serde::Serialize;
use sinew_proto::kv::{Event, EventType, KeyValue};

use crate::cli::Format;

/// Prints `answer` as one JSON line.
pub fn json<T: Serialize>(answer: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, answer)?;
    writeln!(out)
}

/// Prints a key-value pair as etcdctl does: the key, then the value, each on its line.
pub fn kv(pair: &KeyValue, keys_only: bool, values_only: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if !values_only {
        out.write_all(&pair.key)?;
        writeln!(out)?;
    }
    if !keys_only {
        out.write_all(&pair.value)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Prints a watch event as etcdctl does: PUT or DELETE, the key, the value.
pub fn event(event: &Event, format: Format) -> io::Result<()> {
    if format == Format::Json {
        return json(event);
    }
    let deleted = event.r#type() == EventType::Delete;
    println!("{}", if deleted { "DELETE" } else { "PUT" });
    kv(&event.kv.clone().unwrap_or_default(), deleted, false)?;
    if let Some(previous) = &event.prev_kv {
        kv(previous, false, false)?;
    }
    Ok(())
}

/// A lease or member id as etcdctl prints it.
pub fn hex(id: impl Into<u64>) -> String {
    format!("{:x}", id.into())
}

/// A lease id (signed on the wire) as etcdctl prints it.
pub fn lease_hex(id: i64) -> String {
    format!("{:x}", id.cast_unsigned())
}
