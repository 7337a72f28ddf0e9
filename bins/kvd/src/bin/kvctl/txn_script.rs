//! etcdctl's transaction script: comparisons, a blank line, success requests, a blank line,
//! failure requests.
//!
//! ```text
//! mod("key1") > "0"
//! value("key2") = "v"
//!
//! put key1 "new value"
//! get key2
//!
//! del key1
//! ```

use anyhow::{bail, Context, Result};
use sinew_proto::kv::{
    txn, Compare, CompareResult, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TargetUnion, TxnRequest,
};

/// Parses a whole script.
pub fn parse(script: &str) -> Result<TxnRequest> {
    let mut sections = vec![Vec::new()];
    for line in script.lines() {
        if line.trim().is_empty() {
            sections.push(Vec::new());
        } else if let Some(section) = sections.last_mut() {
            section.push(line.trim());
        }
    }
    if sections.len() > 3 && sections[3..].iter().any(|section| !section.is_empty()) {
        bail!("a transaction has three sections separated by blank lines: compares, success requests, failure requests");
    }
    let section = |index: usize| sections.get(index).cloned().unwrap_or_default();
    Ok(TxnRequest {
        compare: section(0)
            .into_iter()
            .map(|line| compare(line).with_context(|| format!("compare {line:?}")))
            .collect::<Result<_>>()?,
        success: section(1)
            .into_iter()
            .map(|line| request(line).with_context(|| format!("request {line:?}")))
            .collect::<Result<_>>()?,
        failure: section(2)
            .into_iter()
            .map(|line| request(line).with_context(|| format!("request {line:?}")))
            .collect::<Result<_>>()?,
    })
}

/// Splits a line into words, honouring double quotes and backslash escapes inside them.
fn words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&next) = chars.peek() {
        if next.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if next == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => word.extend(chars.next()),
                    Some(other) => word.push(other),
                    None => bail!("unterminated quote"),
                }
            }
        } else {
            while let Some(&next) = chars.peek() {
                if next.is_whitespace() {
                    break;
                }
                word.push(next);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

fn compare(line: &str) -> Result<Compare> {
    let (target_part, rest) = line
        .split_once('(')
        .context("expected target(\"key\") op \"value\"")?;
    let (key_part, rest) = rest.split_once(')').context("missing ')'")?;
    let key = words(key_part)?
        .into_iter()
        .next()
        .context("missing key")?
        .into_bytes();
    let tail = words(rest)?;
    let [op, value] = tail.as_slice() else {
        bail!("expected an operator (=, !=, <, >) and a value after the key");
    };
    let result = match op.as_str() {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        other => bail!("unknown operator {other:?}: expected =, !=, < or >"),
    };
    let number = || {
        value
            .parse::<i64>()
            .with_context(|| format!("{value:?} is not a number"))
    };
    let operand = match target_part.trim() {
        "value" | "val" => TargetUnion::Value(value.clone().into_bytes()),
        "version" | "ver" => TargetUnion::Version(number()?),
        "create" | "c" => TargetUnion::CreateRevision(number()?),
        "mod" | "m" => TargetUnion::ModRevision(number()?),
        "lease" => TargetUnion::Lease(
            i64::from_str_radix(value, 16)
                .with_context(|| format!("{value:?} is not a hexadecimal lease id"))?,
        ),
        other => {
            bail!("unknown compare target {other:?}: expected value, version, create, mod or lease")
        }
    };
    Ok(txn::compare(key, result, operand))
}

fn request(line: &str) -> Result<RequestOp> {
    let words = words(line)?;
    let (verb, args) = words.split_first().context("empty request")?;
    let key = |index: usize| -> Result<Vec<u8>> {
        Ok(args
            .get(index)
            .with_context(|| format!("{verb} needs a key"))?
            .clone()
            .into_bytes())
    };
    let range_end = || {
        args.get(1)
            .map(|end| end.clone().into_bytes())
            .unwrap_or_default()
    };
    Ok(match verb.as_str() {
        "put" => txn::put(PutRequest {
            key: key(0)?,
            value: args
                .get(1)
                .context("put needs a value")?
                .clone()
                .into_bytes(),
            ..PutRequest::default()
        }),
        "get" => txn::range(RangeRequest {
            key: key(0)?,
            range_end: range_end(),
            ..RangeRequest::default()
        }),
        "del" => txn::delete(DeleteRangeRequest {
            key: key(0)?,
            range_end: range_end(),
            prev_kv: false,
        }),
        other => bail!("unknown request {other:?}: expected put, get or del"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_proto::kv::request_op::Request;
    use sinew_proto::kv::CompareTarget;

    #[test]
    fn parses_etcdctls_example() {
        let txn = parse(
            "mod(\"key1\") > \"0\"\nvalue(\"k 2\") = \"a \\\"b\\\"\"\n\nput key1 \"overwrote-key1\"\nget k\n\ndel key1\n",
        )
        .unwrap();
        assert_eq!(txn.compare.len(), 2);
        assert_eq!(txn.compare[0].target(), CompareTarget::Mod);
        assert_eq!(txn.compare[0].result(), CompareResult::Greater);
        assert_eq!(txn.compare[1].key, b"k 2");
        assert_eq!(
            txn.compare[1].target_union,
            Some(TargetUnion::Value(b"a \"b\"".to_vec()))
        );
        assert!(
            matches!(&txn.success[0].request, Some(Request::RequestPut(put)) if put.value == b"overwrote-key1")
        );
        assert!(
            matches!(&txn.failure[0].request, Some(Request::RequestDeleteRange(del)) if del.key == b"key1")
        );
    }

    #[test]
    fn mistakes_say_which_line() {
        let error = format!("{:#}", parse("size(\"k\") = \"1\"").unwrap_err());
        assert!(
            error.contains("size") && error.contains("unknown compare target"),
            "{error}"
        );
        let error = format!("{:#}", parse("\n\nset k v").unwrap_err());
        assert!(error.contains("unknown request \"set\""), "{error}");
    }
}
