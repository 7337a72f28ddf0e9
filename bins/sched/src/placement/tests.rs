//! The placement rules, table by table, on views built by hand.

use std::collections::BTreeMap;

use super::*;
use crate::unit::{Build, Exec, ExecKind, Placement};

const DIGEST: &str = "aa00000000000000000000000000000000000000000000000000000000000000";

fn machine(id: &str, arch: &str, metadata: &[(&str, &str)]) -> MachineRecord {
    MachineRecord {
        id: id.to_owned(),
        arch: arch.to_owned(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        capacity: Resources {
            memory_mb: 1024,
            cpu_millis: 2000,
        },
        lease: 1,
        ttl_s: 2,
        journal: None,
        address: None,
    }
}

fn spec(name: &str, archs: &[&str], placement: Placement) -> UnitSpec {
    let exec = Exec {
        kind: ExecKind::Binary,
        builds: archs
            .iter()
            .map(|arch| Build {
                arch: (*arch).to_owned(),
                path: format!("/opt/{name}"),
                sha256: DIGEST.to_owned(),
            })
            .collect(),
    };
    UnitSpec {
        placement,
        ..UnitSpec::new(name, exec)
    }
}

fn replicas(n: u32) -> Placement {
    Placement {
        replicas: n,
        ..Placement::default()
    }
}

fn view(machines: Vec<MachineRecord>, units: Vec<UnitSpec>) -> View {
    View {
        machines: machines.into_iter().map(|m| (m.id.clone(), m)).collect(),
        units: units
            .into_iter()
            .map(|spec| {
                (
                    spec.name.clone(),
                    UnitRecord {
                        spec,
                        target: Target::Launched,
                    },
                )
            })
            .collect(),
        ..View::default()
    }
}

fn four_machines() -> Vec<MachineRecord> {
    vec![
        machine("a1", "x86_64", &[("region", "east")]),
        machine("a2", "x86_64", &[("region", "west")]),
        machine("b1", "aarch64", &[("region", "east")]),
        machine("b2", "aarch64", &[("region", "west")]),
    ]
}

/// The plan's placements as `instance → machine` text, for compact tables.
fn placed(plan: &Plan) -> Vec<String> {
    plan.place
        .iter()
        .map(|(instance, machine)| format!("{instance}→{machine}"))
        .collect()
}

/// Applies `plan` to `view`, as the engine's writes would.
fn apply(view: &mut View, plan: &Plan) {
    for removal in &plan.remove {
        view.placed.remove(&removal.instance);
    }
    for (instance, machine) in &plan.place {
        let digest = view.units[&instance.unit].spec.digest();
        view.placed.insert(
            instance.clone(),
            Placed {
                machine: machine.clone(),
                spec_digest: digest,
            },
        );
    }
}

#[test]
fn rules_place_instances_where_they_allow() {
    let cases: Vec<(&str, Vec<UnitSpec>, Vec<&str>)> = vec![
        (
            "replicas spread over machines of the builds' architectures",
            vec![spec("web", &["x86_64", "aarch64"], replicas(3))],
            vec!["web@0→a1", "web@1→a2", "web@2→b1"],
        ),
        (
            "builds limit the architectures",
            vec![spec("arm", &["aarch64"], replicas(2))],
            vec!["arm@0→b1", "arm@1→b2"],
        ),
        (
            "placement.arch narrows further",
            vec![spec(
                "x",
                &["x86_64", "aarch64"],
                Placement {
                    arch: Some("aarch64".into()),
                    replicas: 1,
                    ..Placement::default()
                },
            )],
            vec!["x@0→b1"],
        ),
        (
            "metadata selects, any listed value matches",
            vec![spec(
                "m",
                &["x86_64", "aarch64"],
                Placement {
                    metadata: BTreeMap::from([("region".into(), vec!["west".into()])]),
                    replicas: 2,
                    ..Placement::default()
                },
            )],
            vec!["m@0→a2", "m@1→b2"],
        ),
        (
            "global: one per machine the rules allow",
            vec![spec(
                "log",
                &["aarch64"],
                Placement {
                    global: true,
                    ..Placement::default()
                },
            )],
            vec!["log@b1→b1", "log@b2→b2"],
        ),
        (
            "machine_of: same replica, placed first whatever the names' order",
            vec![
                spec(
                    "a-side",
                    &["x86_64", "aarch64"],
                    Placement {
                        machine_of: Some("db".into()),
                        replicas: 2,
                        ..Placement::default()
                    },
                ),
                spec("db", &["x86_64", "aarch64"], replicas(2)),
            ],
            vec!["db@0→a1", "db@1→a2", "a-side@0→a1", "a-side@1→a2"],
        ),
        (
            "conflicts keep instances of a unit apart",
            vec![spec(
                "web",
                &["x86_64"],
                Placement {
                    conflicts: vec!["web@*".into()],
                    replicas: 2,
                    ..Placement::default()
                },
            )],
            vec!["web@0→a1", "web@1→a2"],
        ),
        (
            "conflicts hold both ways",
            vec![
                spec("cache", &["x86_64"], replicas(1)),
                spec(
                    "batch",
                    &["x86_64"],
                    Placement {
                        conflicts: vec!["cache".into()],
                        replicas: 1,
                        ..Placement::default()
                    },
                ),
                spec("zeta", &["x86_64"], replicas(1)),
            ],
            // batch avoids a1 (cache), zeta then takes the emptier machine... a1 has cache,
            // a2 has batch: a tie on counts, broken by name.
            vec!["batch@0→a1", "cache@0→a2", "zeta@0→a1"],
        ),
    ];
    for (name, units, expected) in cases {
        let plan = plan(&view(four_machines(), units));
        assert_eq!(placed(&plan), expected, "{name}");
        assert!(plan.waiting.is_empty(), "{name}: {:?}", plan.waiting);
        assert!(plan.remove.is_empty(), "{name}");
    }
}

#[test]
fn unsatisfiable_rules_say_why() {
    let cases: Vec<(&str, Vec<MachineRecord>, UnitSpec, &str)> = vec![
        (
            "no machines",
            vec![],
            spec("web", &["x86_64"], replicas(1)),
            "no machines are registered",
        ),
        (
            "the builds' architecture",
            four_machines(),
            spec("rv", &["riscv64"], replicas(1)),
            "no machine of arch riscv64 (the unit's builds)",
        ),
        (
            "placement.arch",
            vec![machine("a1", "x86_64", &[])],
            spec(
                "arm",
                &["x86_64", "aarch64"],
                Placement {
                    arch: Some("aarch64".into()),
                    ..Placement::default()
                },
            ),
            "no machine of arch aarch64",
        ),
        (
            "metadata",
            four_machines(),
            spec(
                "m",
                &["x86_64"],
                Placement {
                    metadata: BTreeMap::from([("region".into(), vec!["north".into()])]),
                    ..Placement::default()
                },
            ),
            "no machine with metadata region in [north]",
        ),
        (
            "machine_of a unit that is not there",
            four_machines(),
            spec(
                "side",
                &["x86_64"],
                Placement {
                    machine_of: Some("db".into()),
                    ..Placement::default()
                },
            ),
            "waits for unit db (machine_of), which is not launched",
        ),
    ];
    for (name, machines, unit, reason) in cases {
        let plan = plan(&view(machines, vec![unit]));
        assert!(plan.place.is_empty(), "{name}");
        let reasons: Vec<&String> = plan.waiting.values().collect();
        assert_eq!(reasons, [reason], "{name}");
    }
}

#[test]
fn conflicts_and_capacity_leave_the_rest_waiting_with_the_reason() {
    let mut web = spec(
        "web",
        &["x86_64"],
        Placement {
            conflicts: vec!["web".into()],
            replicas: 3,
            ..Placement::default()
        },
    );
    let first = plan(&view(four_machines(), vec![web.clone()]));
    assert_eq!(placed(&first), ["web@0→a1", "web@1→a2"]);
    assert!(
        first.waiting[&InstanceId::replica("web", 2)].contains("conflicting instance"),
        "{:?}",
        first.waiting
    );

    web.placement.conflicts.clear();
    web.resources.memory_mb = 600;
    let plan = plan(&view(four_machines(), vec![web]));
    assert_eq!(placed(&plan), ["web@0→a1", "web@1→a2"]);
    assert_eq!(
        plan.waiting[&InstanceId::replica("web", 2)],
        "no machine has room for 600 MiB and 0 millicpus"
    );
}

#[test]
fn a_planned_view_plans_nothing_more_so_a_new_engine_moves_nothing() {
    let mut view = view(
        four_machines(),
        vec![
            spec("web", &["x86_64", "aarch64"], replicas(5)),
            spec(
                "log",
                &["x86_64", "aarch64"],
                Placement {
                    global: true,
                    ..Placement::default()
                },
            ),
        ],
    );
    let first = plan(&view);
    assert_eq!(first.place.len(), 9);
    assert_eq!(plan(&view), first, "the same view gives the same plan");
    apply(&mut view, &first);
    assert_eq!(plan(&view), Plan::default());
}

#[test]
fn a_lost_machines_instances_go_elsewhere_and_the_rest_stay() {
    let mut view = view(
        four_machines(),
        vec![spec("web", &["x86_64", "aarch64"], replicas(4))],
    );
    let first = plan(&view);
    apply(&mut view, &first);
    // The machine's lease ended: its record and its placements went with it.
    view.machines.remove("a2");
    view.placed.retain(|_, placed| placed.machine != "a2");
    let plan = plan(&view);
    assert_eq!(placed(&plan), ["web@1→a1"]);
    assert!(plan.remove.is_empty());
}

#[test]
fn stopped_destroyed_scaled_down_and_changed_units_are_taken_off() {
    let mut view = view(
        four_machines(),
        vec![
            spec("stop", &["x86_64"], replicas(1)),
            spec("gone", &["x86_64"], replicas(1)),
            spec("scale", &["x86_64"], replicas(2)),
            spec("change", &["x86_64"], replicas(1)),
        ],
    );
    let first = plan(&view);
    apply(&mut view, &first);
    view.units.get_mut("stop").unwrap().target = Target::Inactive;
    view.units.remove("gone");
    view.units.get_mut("scale").unwrap().spec.placement.replicas = 1;
    view.units
        .get_mut("change")
        .unwrap()
        .spec
        .args
        .push("--new".into());
    let plan = plan(&view);
    let removed: Vec<String> = plan
        .remove
        .iter()
        .map(|r| format!("{}: {}", r.instance, r.why))
        .collect();
    assert_eq!(
        removed,
        [
            "change@0: its unit's spec changed",
            "gone@0: its unit was destroyed",
            "scale@1: its unit has fewer instances now",
            "stop@0: its unit was stopped",
        ]
    );
    // An instance comes off before it is placed again, so it never has two assignments.
    assert!(plan.place.is_empty());
    apply(&mut view, &plan);
    assert_eq!(placed(&super::plan(&view)), ["change@0→a2"]);
}

#[test]
fn a_failed_instance_stays_failed_and_unplaced() {
    let mut view = view(four_machines(), vec![spec("job", &["x86_64"], replicas(2))]);
    view.failed
        .insert(InstanceId::replica("job", 1), "exited with status 3".into());
    let plan = plan(&view);
    assert_eq!(placed(&plan), ["job@0→a1"]);
    assert_eq!(
        plan.waiting[&InstanceId::replica("job", 1)],
        "failed: exited with status 3; start the unit again to run it"
    );
}

#[test]
fn a_thousand_units_on_a_hundred_machines_plan_quickly_and_evenly() {
    let machines = (0..100)
        .map(|i| {
            machine(
                &format!("m{i:03}"),
                if i % 2 == 0 { "x86_64" } else { "aarch64" },
                &[],
            )
        })
        .collect();
    let units = (0..1000)
        .map(|i| spec(&format!("u{i:04}"), &["x86_64", "aarch64"], replicas(1)))
        .collect();
    let view = view(machines, units);
    let started = std::time::Instant::now();
    let plan = plan(&view);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(plan.place.len(), 1000);
    let mut per_machine: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, machine) in &plan.place {
        *per_machine.entry(machine).or_default() += 1;
    }
    assert!(per_machine.values().all(|&n| n == 10), "{per_machine:?}");
}
