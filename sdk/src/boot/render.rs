//! What the boot server answers with: iPXE scripts, the metadata env file and generic
//! templates, as matchbox renders them.

use serde_json::{Map, Value};

use super::config::{initrd_url, Group, NetBoot};
use super::labels::Labels;

/// `/boot.ipxe`: gathers the machine's labels in iPXE and chains to `/ipxe` with them.
pub const BOOTSTRAP: &str = "#!ipxe\n\
chain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n";

/// The labels that identify a machine in the asset URLs of its script, so that the log and
/// the server's events say which machine fetched which asset.
const IDENTIFYING: [&str; 4] = ["mac", "uuid", "hostname", "arch"];

/// `/ipxe`: the script that boots `boot`, with this server's asset URLs carrying the
/// machine's identifying labels.
pub fn ipxe_script(boot: &NetBoot, labels: &Labels) -> String {
    let mut script = format!("#!ipxe\nkernel {}", with_labels(&boot.kernel, labels));
    for arg in &boot.args {
        script.push(' ');
        script.push_str(arg);
    }
    script.push('\n');
    for entry in &boot.initrd {
        let url = initrd_url(entry);
        let options = &entry[..entry.len() - url.len()];
        script.push_str(&format!("initrd {options}{}\n", with_labels(url, labels)));
    }
    script.push_str("boot\n");
    script
}

/// `/grub`: a GRUB configuration that boots `boot` at once, fetching from `(http,host)`
/// (GRUB has no relative URLs; `host` is the server as the machine addressed it). Every
/// word is single-quoted, so nothing in an argument is expanded by GRUB's script syntax.
pub fn grub_script(boot: &NetBoot, labels: &Labels, host: &str) -> String {
    let absolute = |url: &str| {
        let url = with_labels(url, labels);
        if url.starts_with('/') {
            format!("(http,{host}){url}")
        } else if let Some(rest) = url.strip_prefix("http://") {
            let (server, path) = rest.split_once('/').unwrap_or((rest, ""));
            format!("(http,{server})/{path}")
        } else {
            url
        }
    };
    let mut script = format!("linux {}", grub_word(&absolute(&boot.kernel)));
    for arg in &boot.args {
        script.push(' ');
        script.push_str(&grub_word(arg));
    }
    script.push('\n');
    if !boot.initrd.is_empty() {
        script.push_str("initrd");
        for entry in &boot.initrd {
            script.push(' ');
            script.push_str(&grub_word(&absolute(initrd_url(entry))));
        }
        script.push('\n');
    }
    script.push_str("boot\n");
    script
}

/// `word` in single quotes for GRUB's script syntax (a quote itself as `'\''`, as in sh).
fn grub_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// `url` with the identifying labels as its query when it is one of this server's assets.
fn with_labels(url: &str, labels: &Labels) -> String {
    if !url.starts_with("/assets/") {
        return url.to_owned();
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for key in IDENTIFYING {
        if let Some(value) = labels.get(key) {
            query.append_pair(key, value);
        }
    }
    let query = query.finish();
    match (query.is_empty(), url.contains('?')) {
        (true, _) => url.to_owned(),
        (false, true) => format!("{url}&{query}"),
        (false, false) => format!("{url}?{query}"),
    }
}

/// What templates and `/metadata` see, as matchbox collects it: the group's metadata, its
/// selectors (keys in lower case), and `request` with the query's labels and raw text.
pub fn variables(group: &Group, labels: &Labels, raw_query: &str) -> Map<String, Value> {
    let mut data = group.metadata.clone();
    for (key, value) in &group.selector {
        data.insert(key.to_lowercase(), Value::String(value.clone()));
    }
    let query: Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    let mut request = Map::new();
    request.insert("query".into(), Value::Object(query));
    request.insert("raw_query".into(), Value::String(raw_query.to_owned()));
    data.insert("request".into(), Value::Object(request));
    data
}

/// `/metadata`: `KEY=value` lines, keys upper-cased, nested objects flattened with `_`
/// (`{"outer": {"inner": 1}}` is `OUTER_INNER=1`), sorted; arrays are written as JSON.
pub fn env_file(data: &Map<String, Value>) -> String {
    let mut lines = Vec::new();
    flatten("", data, &mut lines);
    lines.sort();
    lines.into_iter().map(|line| line + "\n").collect()
}

fn flatten(prefix: &str, data: &Map<String, Value>, lines: &mut Vec<String>) {
    for (key, value) in data {
        let name = format!("{prefix}{key}");
        match value {
            Value::Object(inner) => flatten(&format!("{name}_"), inner, lines),
            Value::String(text) => lines.push(format!("{}={text}", name.to_uppercase())),
            Value::Null => lines.push(format!("{}=", name.to_uppercase())),
            other => lines.push(format!("{}={other}", name.to_uppercase())),
        }
    }
}

/// Renders generic template `name` with `data`; the error says why it failed, with tera's
/// causes.
pub fn generic(
    templates: &tera::Tera,
    name: &str,
    data: &Map<String, Value>,
) -> Result<String, String> {
    let context = tera::Context::from_serialize(data).map_err(|e| e.to_string())?;
    templates
        .render(name, &context)
        .map_err(|error| sinew_support::error_chain(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> NetBoot {
        NetBoot {
            kernel: "/assets/vmlinuz".into(),
            initrd: vec!["--name main /assets/initrd.img".into()],
            args: vec!["initrd=main".into(), "console=ttyS0".into()],
        }
    }

    #[test]
    fn the_ipxe_script_boots_the_profile_with_the_machine_named_in_asset_urls() {
        let labels = Labels::from_pairs([("mac", "52:54:00:00:00:01"), ("serial", "s1")]);
        assert_eq!(
            ipxe_script(&boot(), &labels),
            "#!ipxe\n\
             kernel /assets/vmlinuz?mac=52%3A54%3A00%3A00%3A00%3A01 initrd=main console=ttyS0\n\
             initrd --name main /assets/initrd.img?mac=52%3A54%3A00%3A00%3A00%3A01\n\
             boot\n"
        );
        let elsewhere = NetBoot {
            kernel: "http://mirror.invalid/vmlinuz".into(),
            ..NetBoot::default()
        };
        assert_eq!(
            ipxe_script(&elsewhere, &Labels::default()),
            "#!ipxe\nkernel http://mirror.invalid/vmlinuz\nboot\n"
        );
    }

    #[test]
    fn metadata_is_flattened_upper_cased_and_sorted() {
        let group: Group = serde_json::from_value(serde_json::json!({
            "id": "g", "profile": "p",
            "selector": {"mac": "52:54:00:00:00:01"},
            "metadata": {"pod_network": "10.2.0.0/16", "ssh": {"keys": ["a", "b"], "port": 22}},
        }))
        .unwrap();
        let labels = Labels::from_pairs([("mac", "52:54:00:00:00:01")]);
        let data = variables(&group, &labels, "mac=52-54-00-00-00-01");
        assert_eq!(
            env_file(&data),
            "MAC=52:54:00:00:00:01\n\
             POD_NETWORK=10.2.0.0/16\n\
             REQUEST_QUERY_MAC=52:54:00:00:00:01\n\
             REQUEST_RAW_QUERY=mac=52-54-00-00-00-01\n\
             SSH_KEYS=[\"a\",\"b\"]\n\
             SSH_PORT=22\n"
        );
    }

    #[test]
    fn a_generic_template_sees_metadata_and_request_and_a_failure_says_why() {
        let mut templates = tera::Tera::new();
        templates
            .add_raw_template("t", "{{ role }} on {{ request.query.mac }}")
            .unwrap();
        let group: Group = serde_json::from_value(serde_json::json!({
            "id": "g", "profile": "p", "metadata": {"role": "worker"},
        }))
        .unwrap();
        let labels = Labels::from_pairs([("mac", "52:54:00:00:00:01")]);
        let data = variables(&group, &labels, "");
        assert_eq!(
            generic(&templates, "t", &data).unwrap(),
            "worker on 52:54:00:00:00:01"
        );
        let reason = generic(&templates, "t", &Map::new()).unwrap_err();
        assert!(reason.contains("role"), "{reason}");
    }
}
