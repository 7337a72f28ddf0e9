//! sinew integration tests: one binary, one module per area. Guest tests boot real QEMU
//! guests (TCG here), each in its own small lab.

mod boot_media;
mod boot_server;
mod deploy;
mod faults;
mod guests;
mod kv_client;
mod kvd_cluster;
mod leftovers;
mod machine_image;
mod netboot;
mod overlay;
mod playbook;
mod present;
mod proxy;
mod sched;
mod sched_containers;
mod sched_guests;
mod sched_services;
mod ssh;
mod vm;
