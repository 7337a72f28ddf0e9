//! A `/v2/keys` request's parameters, checked in the order etcd checks them (etcd's
//! `parseKeyRequest`), so the same bad request gets the same error.

use crate::v2::error::{Code, Error};
use crate::v2::form::Form;

/// A parsed `/v2/keys` request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRequest {
    /// The key path after `/v2/keys`.
    pub key: String,
    /// `value`.
    pub value: String,
    /// `dir`.
    pub dir: bool,
    /// `prevValue`; empty when not given.
    pub prev_value: String,
    /// `prevIndex`; 0 when not given.
    pub prev_index: u64,
    /// `prevExist`, if given.
    pub prev_exist: Option<bool>,
    /// `wait`.
    pub wait: bool,
    /// `waitIndex`; 0 when not given.
    pub wait_index: u64,
    /// `recursive`.
    pub recursive: bool,
    /// `quorum`: a linearizable read.
    pub quorum: bool,
    /// `stream`: keep a watch open for every change.
    pub stream: bool,
    /// `ttl` in seconds, if given and not empty.
    pub ttl: Option<u64>,
    /// `refresh`.
    pub refresh: bool,
    /// `noValueOnSuccess`: answer writes with the action only.
    pub no_value_on_success: bool,
}

impl KeyRequest {
    /// Reads the parameters of a request for `key` made with `method`.
    pub fn parse(method: &str, key: &str, form: &Form) -> Result<Self, Error> {
        let prev_index = uint(form, "prevIndex", Code::IndexNaN)?;
        let wait_index = uint(form, "waitIndex", Code::IndexNaN)?;
        let recursive = flag(form, "recursive")?;
        // `sorted` is checked as etcd does; listings are always sorted here.
        flag(form, "sorted")?;
        let wait = flag(form, "wait")?;
        let dir = flag(form, "dir")?;
        let quorum = flag(form, "quorum")?;
        let stream = flag(form, "stream")?;
        if wait && method != "GET" {
            return Err(Error::request(
                Code::InvalidField,
                r#""wait" can only be used with GET requests"#,
            ));
        }
        let prev_value = form.first("prevValue");
        if prev_value == Some("") {
            return Err(Error::request(
                Code::PrevValueRequired,
                r#""prevValue" cannot be empty"#,
            ));
        }
        let no_value_on_success = flag(form, "noValueOnSuccess")?;
        let ttl = if form.value("ttl").is_empty() {
            None
        } else {
            Some(uint(form, "ttl", Code::TtlNaN)?)
        };
        let prev_exist = optional_flag(form, "prevExist")?;
        let refresh = optional_flag(form, "refresh")?.unwrap_or(false);
        if refresh {
            if !form.value("value").is_empty() {
                return Err(Error::request(
                    Code::RefreshValue,
                    "A value was provided on a refresh",
                ));
            }
            if ttl.is_none() {
                return Err(Error::request(Code::RefreshTtlRequired, "No TTL value set"));
            }
        }
        Ok(Self {
            key: key.to_owned(),
            value: form.value("value").to_owned(),
            dir,
            prev_value: prev_value.unwrap_or("").to_owned(),
            prev_index,
            prev_exist,
            wait,
            wait_index,
            recursive,
            quorum,
            stream,
            ttl,
            refresh,
            no_value_on_success,
        })
    }
}

/// A non-negative integer parameter, 0 when absent.
fn uint(form: &Form, name: &str, code: Code) -> Result<u64, Error> {
    match form.first(name) {
        None => Ok(0),
        // Go's `ParseUint` takes digits only: no sign, no spaces.
        Some(text) => Some(text)
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| Error::request(code, format!("invalid value for {name:?}"))),
    }
}

/// A boolean parameter, false when absent.
fn flag(form: &Form, name: &str) -> Result<bool, Error> {
    match form.first(name) {
        None => Ok(false),
        Some(text) => parse_bool(text).ok_or_else(|| {
            Error::request(Code::InvalidField, format!("invalid value for {name:?}"))
        }),
    }
}

/// A boolean parameter that may be absent; etcd words its error without quotes.
fn optional_flag(form: &Form, name: &str) -> Result<Option<bool>, Error> {
    form.first(name)
        .map(|text| {
            parse_bool(text).ok_or_else(|| {
                Error::request(Code::InvalidField, format!("invalid value for {name}"))
            })
        })
        .transpose()
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}
