//! kvd under faults: short seeded runs of kills, pauses, partitions and clock jumps on a
//! three-member cluster in network namespaces, with JSON and gRPC clients, checked by every
//! checker. `SINEW_FAULT_SEED` replays a schedule.

use std::time::Duration;

use anyhow::Result;
use sinew_tests::faults::{self, nemesis::Kind, Config};
use sinew_tests::kv_cluster::Server;

fn short_run(seed: u64) -> Result<Config> {
    Ok(Config {
        server: Server::kvd(false)?,
        members: 3,
        clients: 6,
        lockers: 4,
        keys: 3,
        duration: Duration::from_secs(12),
        seed,
        kinds: Kind::ALL.to_vec(),
    })
}

fn passes(config: &Config) -> Result<()> {
    let report = faults::run(config)?;
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
    // A step plans at most 3.5 s (a replacement may take longer): a few faults in 12 s.
    assert!(report.happened.len() >= 2, "{report}");
    assert!(report.count("answered") >= 200, "{report}");
    for (api, events, _) in &report.watched {
        assert!(
            *events >= 100,
            "the {} watcher saw {events} events",
            api.name()
        );
    }
    Ok(())
}

#[test]
fn kvd_stays_linearizable_and_loses_nothing_under_a_short_fault_run() -> Result<()> {
    passes(&short_run(faults::seed())?)
}

/// Leaders killed under writes that followers forward to them: a follower once sent such a
/// write again to the next leader, which applied it twice (issue 21, found by seed
/// 1796517243558108001). The member now answers that the write is in doubt, as etcd does.
#[test]
fn a_write_whose_leader_is_killed_under_it_is_never_applied_twice() -> Result<()> {
    passes(&Config {
        kinds: vec![Kind::Kill, Kind::ClockJump],
        ..short_run(1_796_517_243_558_108_001)?
    })
}

/// Every member killed at once, again and again, with clock jumps: a leader restarted in
/// its old term (as openraft 0.9 allows) served linearizable reads from before writes it
/// had acknowledged, and wrote other entries at the indexes of those its disk lost, under
/// the same term, so that members diverged (issue 21, found by seeds 1796520039070518308
/// and 1796521217119611654). A member that led now has to win a new term first.
#[test]
fn members_restarted_together_agree_and_read_every_acknowledged_write() -> Result<()> {
    passes(&Config {
        kinds: vec![Kind::KillAll, Kind::ClockJump],
        ..short_run(1_796_521_217_119_611_654)?
    })
}
