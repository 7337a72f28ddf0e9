//! Published ports: `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp]`, served by a userspace TCP
//! proxy in the supervisor that connects to the container's overlay address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};

/// A `-p` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "-p {0:?}: expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp], e.g. 8080:80 or 127.0.0.1:8080:80"
)]
pub struct PortError(pub String);

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address to listen on (0.0.0.0 unless given).
    pub host: SocketAddr,
    /// Port inside the container.
    pub container_port: u16,
}

impl std::str::FromStr for PortSpec {
    type Err = PortError;

    fn from_str(text: &str) -> Result<Self, PortError> {
        let err = || PortError(text.to_string());
        let spec = text.strip_suffix("/tcp").unwrap_or(text);
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let (container, host_port, host_ip) = match parts.as_slice() {
            [c, h] => (*c, *h, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            [c, h, ip] => (
                *c,
                *h,
                ip.trim_matches(['[', ']']).parse().map_err(|_| err())?,
            ),
            _ => return Err(err()),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(err);
        Ok(PortSpec {
            host: SocketAddr::new(host_ip, port(host_port)?),
            container_port: port(container)?,
        })
    }
}

/// Listening sockets, bound before the container starts so a busy port fails the run.
#[derive(Debug)]
pub struct Published {
    listeners: Vec<(TcpListener, u16)>,
}

/// Binds every published port.
pub fn bind(specs: &[PortSpec]) -> io::Result<Published> {
    let listeners = specs
        .iter()
        .map(|s| {
            TcpListener::bind(s.host)
                .map(|l| (l, s.container_port))
                .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", s.host)))
        })
        .collect::<io::Result<_>>()?;
    Ok(Published { listeners })
}

impl Published {
    /// Serves every listener on its own thread, forwarding to `container` until the
    /// process exits.
    pub fn serve(self, container: Ipv4Addr) {
        for (listener, port) in self.listeners {
            let target = SocketAddr::new(IpAddr::V4(container), port);
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        if let Err(e) = forward(client, target) {
                            tracing::debug!(error = %e, %target, "proxied connection ended");
                        }
                    });
                }
            });
        }
    }
}

/// Copies both directions until each side closes.
fn forward(client: TcpStream, target: SocketAddr) -> io::Result<()> {
    let upstream = TcpStream::connect(target)?;
    let (mut client_r, mut upstream_w) = (client.try_clone()?, upstream.try_clone()?);
    let to_container = std::thread::spawn(move || {
        let _ = io::copy(&mut client_r, &mut upstream_w);
        let _ = upstream_w.shutdown(Shutdown::Write);
    });
    let (mut upstream_r, mut client_w) = (upstream, client);
    io::copy(&mut upstream_r, &mut client_w)?;
    client_w.shutdown(Shutdown::Write)?;
    let _ = to_container.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let p: PortSpec = "8080:80".parse().unwrap();
        assert_eq!(
            p,
            PortSpec {
                host: "0.0.0.0:8080".parse().unwrap(),
                container_port: 80
            }
        );
        let p: PortSpec = "127.0.0.1:8081:81/tcp".parse().unwrap();
        assert_eq!(
            p,
            PortSpec {
                host: "127.0.0.1:8081".parse().unwrap(),
                container_port: 81
            }
        );
        for bad in [
            "80",
            "a:80",
            "8080:80/udp",
            "0:80",
            "8080:70000",
            "1.2.3:80:80",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn proxies_a_tcp_connection_both_ways() {
        use std::io::{Read, Write};
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_port = upstream.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&[buf, *b"-ack"].concat()).unwrap();
        });
        let published = bind(&[PortSpec {
            host: "127.0.0.1:0".parse().unwrap(),
            container_port: upstream_port,
        }])
        .unwrap();
        let front = published.listeners[0].0.local_addr().unwrap();
        published.serve(Ipv4Addr::LOCALHOST);
        let mut c = TcpStream::connect(front).unwrap();
        c.write_all(b"ping").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "ping-ack");
    }
}
