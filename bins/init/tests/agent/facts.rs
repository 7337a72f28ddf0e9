use std::time::Duration;

use crate::harness::TestAgent;

#[tokio::test]
async fn facts_describe_this_machine() {
    let agent = TestAgent::start();
    let facts = agent.client().await.facts().await.unwrap();
    assert!(!facts.hostname.is_empty());
    assert_eq!(facts.arch, std::env::consts::ARCH);
    assert!(
        facts
            .kernel_release
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()),
        "{}",
        facts.kernel_release
    );
    assert!(facts.uptime > Duration::ZERO);
    assert!(facts.cpus >= 1);
    assert!(facts.mem_total_kib > 0);
    assert!(facts.mem_available_kib > 0 && facts.mem_available_kib <= facts.mem_total_kib);
    assert_eq!(facts.agent_version, env!("CARGO_PKG_VERSION"));
    let lo = facts
        .interfaces
        .iter()
        .find(|interface| interface.name == "lo")
        .expect("no lo");
    assert!(lo.up);
    assert!(lo
        .addresses
        .iter()
        .any(|address| address.address.is_loopback()));
    let names: Vec<_> = facts
        .interfaces
        .iter()
        .map(|interface| interface.name.clone())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}
