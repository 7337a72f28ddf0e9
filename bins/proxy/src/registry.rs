//! Follows a service's discovery keys and keeps its pool to the registered instances its
//! routing admits.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sinew_proto::discovery::{service_prefix, Key, Registration, Routing};
use sinew_proto::kv::{KeyValue, KvClient, PrefixView, ViewChange};
use tokio::sync::oneshot;

use crate::backends::Pool;

/// Follows `pool`'s service in the store for as long as it runs; `read` is told once the
/// store was first read and the pool filled.
pub async fn follow(client: KvClient, pool: Arc<Pool>, read: oneshot::Sender<()>) {
    let mut view = PrefixView::open(client, service_prefix(pool.service())).await;
    let mut reader = Reader::default();
    let mut read = Some(read);
    loop {
        let (admitted, routing) = reader.admitted(pool.service(), view.entries());
        tracing::debug!(
            service = pool.service(),
            backends = admitted.len(),
            revision = view.revision(),
            "applying the store's view"
        );
        pool.update(admitted, routing, view.revision());
        if let Some(read) = read.take() {
            let _ = read.send(());
        }
        if let ViewChange::Resynced { revision, reason } = view.changed().await {
            tracing::info!(service = pool.service(), revision, %reason, "resynced");
        }
    }
}

/// Reads registrations and the routing record, remembering what it warned about so that a
/// malformed key is logged once per change, not once per event.
#[derive(Debug, Default)]
pub struct Reader {
    routing: Option<Routing>,
    warned: BTreeSet<(Vec<u8>, i64)>,
}

impl Reader {
    /// The registered instances of `service` that its routing admits, with the routing.
    /// A malformed registration is left out; a malformed routing record leaves the last
    /// valid one in force (an unreadable switch must not send traffic to every version).
    pub fn admitted(
        &mut self,
        service: &str,
        entries: &BTreeMap<Vec<u8>, KeyValue>,
    ) -> (Vec<(Registration, SocketAddr)>, Option<Routing>) {
        let mut registrations = Vec::new();
        let mut routing_seen = false;
        for (key, kv) in entries {
            match Key::parse(key) {
                Some(Key::Routing { .. }) => {
                    routing_seen = true;
                    match serde_json::from_slice::<Routing>(&kv.value) {
                        Ok(routing) => self.routing = Some(routing),
                        Err(error) => self.warn(kv, &format!(
                            "ignoring a malformed routing record, keeping the last valid one: {error}"
                        )),
                    }
                }
                Some(Key::Registration {
                    machine, instance, ..
                }) => match read_registration(service, &machine, &instance, &kv.value) {
                    Ok(found) => registrations.push(found),
                    Err(reason) => self.warn(kv, &format!("ignoring a registration: {reason}")),
                },
                None => self.warn(kv, "ignoring a key outside the layout"),
            }
        }
        if !routing_seen {
            self.routing = None;
        }
        let routing = self.routing.clone();
        registrations
            .retain(|(registration, _)| Routing::admits(routing.as_ref(), &registration.version));
        self.warned.retain(|(key, revision)| {
            entries
                .get(key)
                .is_some_and(|kv| kv.mod_revision == *revision)
        });
        (registrations, routing)
    }

    fn warn(&mut self, kv: &KeyValue, message: &str) {
        if self.warned.insert((kv.key.clone(), kv.mod_revision)) {
            tracing::warn!(key = %String::from_utf8_lossy(&kv.key), "{message}");
        }
    }
}

fn read_registration(
    service: &str,
    machine: &str,
    instance: &str,
    value: &[u8],
) -> Result<(Registration, SocketAddr), String> {
    let registration: Registration =
        serde_json::from_slice(value).map_err(|error| format!("not a registration: {error}"))?;
    if registration.service != service
        || registration.machine != machine
        || registration.instance != instance
    {
        return Err(format!(
            "it names {}/{}/{}, not the key's service, machine and instance",
            registration.service, registration.machine, registration.instance
        ));
    }
    let ip: IpAddr = registration
        .address
        .parse()
        .map_err(|_| format!("address {:?} is not an IP address", registration.address))?;
    if registration.port == 0 {
        return Err("port 0".to_owned());
    }
    let address = SocketAddr::new(ip, registration.port);
    Ok((registration, address))
}

#[cfg(test)]
mod tests {
    use sinew_proto::discovery;

    use super::*;

    fn entry(key: String, value: &str, mod_revision: i64) -> (Vec<u8>, KeyValue) {
        let kv = KeyValue {
            key: key.clone().into_bytes(),
            value: value.as_bytes().to_vec(),
            mod_revision,
            ..KeyValue::default()
        };
        (key.into_bytes(), kv)
    }

    fn registration(machine: &str, instance: &str, version: &str, port: u16) -> String {
        serde_json::to_string(&Registration {
            service: "web".into(),
            version: version.into(),
            address: "10.0.0.2".into(),
            port,
            instance: instance.into(),
            machine: machine.into(),
            metadata: BTreeMap::new(),
        })
        .unwrap()
    }

    #[test]
    fn routing_selects_versions_and_bad_entries_are_left_out() {
        let mut entries: BTreeMap<Vec<u8>, KeyValue> = [
            entry(
                discovery::registration("web", "h1", "blue@0"),
                &registration("h1", "blue@0", "blue", 80),
                2,
            ),
            entry(
                discovery::registration("web", "h2", "green@0"),
                &registration("h2", "green@0", "green", 81),
                3,
            ),
            entry(
                discovery::registration("web", "h3", "web@9"),
                &registration("h9", "web@9", "blue", 82),
                4,
            ),
            entry(discovery::registration("web", "h4", "web@4"), "{", 5),
        ]
        .into_iter()
        .collect();
        let mut reader = Reader::default();
        let (admitted, routing) = reader.admitted("web", &entries);
        assert_eq!(routing, None);
        let ports: Vec<u16> = admitted.iter().map(|(_, a)| a.port()).collect();
        assert_eq!(ports, [80, 81]);

        let (key, kv) = entry(discovery::routing("web"), r#"{"versions":["green"]}"#, 6);
        entries.insert(key, kv);
        let (admitted, routing) = reader.admitted("web", &entries);
        assert_eq!(routing.unwrap().versions, ["green"]);
        assert_eq!(admitted.len(), 1);
        assert_eq!(admitted[0].1.port(), 81);

        // A broken switch keeps the last valid routing; a deleted one admits every version.
        let (key, kv) = entry(discovery::routing("web"), "blue", 7);
        entries.insert(key.clone(), kv);
        let (admitted, _) = reader.admitted("web", &entries);
        assert_eq!(admitted[0].1.port(), 81);
        entries.remove(&key);
        let (admitted, routing) = reader.admitted("web", &entries);
        assert_eq!((admitted.len(), routing), (2, None));
    }
}
