//! Attaching the fast path's programs with rtnetlink: a `clsact` qdisc on the link and a
//! direct-action `bpf` filter on its ingress, at a priority of our own so that other
//! tools' filters stay untouched.

use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

use super::bpf::Program;

/// Our filters' priority: late, after any a user put there first.
const PRIORITY: u16 = 0xf000;
/// Only IPv4 reaches the programs (`ETH_P_IP` in network order, as tc takes it).
const PROTOCOL: u16 = 0x0800_u16.to_be();

/// A tc request failed, with the kernel's errno (`EPIPE` if the netlink connection is gone).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {}", std::io::Error::from_raw_os_error(*.errno))]
pub struct TcError {
    /// What was being done.
    pub what: String,
    /// The kernel's errno.
    pub errno: i32,
}

/// An empty tc message about link `index`.
fn on_link(index: u32) -> TcMessage {
    TcMessage::with_index(i32::try_from(index).expect("interface indexes fit an int"))
}

fn ingress_filter(index: u32) -> TcMessage {
    let mut message = on_link(index);
    message.header.parent = TcHandle {
        major: 0xffff,
        minor: TcHandle::MIN_INGRESS,
    };
    message.header.info = u32::from(TcHandle {
        major: PRIORITY,
        minor: PROTOCOL,
    });
    message
}

/// Sends one request and waits for the kernel's acknowledgement.
async fn send(
    handle: &Handle,
    message: RouteNetlinkMessage,
    flags: u16,
    what: impl FnOnce() -> String,
) -> Result<(), TcError> {
    let mut request = NetlinkMessage::from(message);
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut responses = match handle.clone().request(request) {
        Ok(responses) => responses,
        Err(_) => {
            return Err(TcError {
                what: what(),
                errno: libc::EPIPE,
            })
        }
    };
    while let Some(response) = responses.next().await {
        if let NetlinkPayload::Error(error) = response.payload {
            if let Some(code) = error.code {
                return Err(TcError {
                    what: what(),
                    errno: -code.get(),
                });
            }
        }
    }
    Ok(())
}

/// Gives link `index` a `clsact` qdisc; one already there (or an `ingress` qdisc, which
/// takes ingress filters as well) is kept.
pub async fn ensure_clsact(handle: &Handle, index: u32) -> Result<(), TcError> {
    let mut message = on_link(index);
    message.header.parent = TcHandle::CLSACT;
    message.header.handle = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    message
        .attributes
        .push(TcAttribute::Kind("clsact".to_owned()));
    let created = send(
        handle,
        RouteNetlinkMessage::NewQueueDiscipline(message),
        NLM_F_CREATE | NLM_F_EXCL,
        || format!("adding a clsact qdisc to link {index}"),
    )
    .await;
    match created {
        Err(error) if error.errno == libc::EEXIST => Ok(()),
        other => other,
    }
}

/// Attaches `program` to link `index`'s ingress, replacing our earlier filter there.
pub async fn attach(
    handle: &Handle,
    index: u32,
    program: &Program,
    name: &str,
) -> Result<(), TcError> {
    let mut message = ingress_filter(index);
    message.header.handle = 1.into();
    message.attributes.push(TcAttribute::Kind("bpf".to_owned()));
    message.attributes.push(TcAttribute::Options(vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(program.fd())),
        TcOption::Bpf(TcFilterBpfOption::ProgName(name.to_owned())),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ]));
    send(
        handle,
        RouteNetlinkMessage::NewTrafficFilter(message),
        NLM_F_CREATE | NLM_F_REPLACE,
        || format!("attaching {name} to link {index}"),
    )
    .await
}

/// Removes our filter from link `index`; a link or filter already gone is fine.
pub async fn detach(handle: &Handle, index: u32) -> Result<(), TcError> {
    let removed = send(
        handle,
        RouteNetlinkMessage::DelTrafficFilter(ingress_filter(index)),
        0,
        || format!("detaching the fast path from link {index}"),
    )
    .await;
    match removed {
        Err(error) if matches!(error.errno, libc::ENODEV | libc::ENOENT | libc::EINVAL) => Ok(()),
        other => other,
    }
}
