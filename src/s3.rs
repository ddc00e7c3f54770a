//! A small blocking S3 client: where a bucket is (`s3://BUCKET/PREFIX`,
//! endpoint, region, path style), credentials from the usual `AWS_*`
//! variables, and the five requests pkgcell needs (list, head, get, put,
//! delete).
//!
//! Requests are signed by `rusty-s3` (sans-IO: it only makes presigned
//! URLs) and sent by `ureq` (blocking HTTP, no async runtime); see
//! docs/s3.md for why these two. Objects are sent in one PUT: S3 takes up
//! to 5 GiB that way, far more than any package, so there is no multipart
//! upload. Errors name the endpoint, the bucket and the key, and say what
//! to check.
//!
//! Knows nothing of packages or stores: the publish stage and the remote
//! store use it.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use crate::error::IoPath;

/// How long a signed request stays valid; each is used at once.
const SIGN_FOR: Duration = Duration::from_secs(3600);

/// `s3://BUCKET/PREFIX`: a bucket and a key prefix in it (no leading or
/// trailing `/`; empty for the bucket's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    bucket: String,
    prefix: String,
}

/// An `s3://` URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not an S3 location: {why} (expected s3://BUCKET or s3://BUCKET/PREFIX)")]
pub struct S3UrlError {
    /// The text given.
    pub url: String,
    /// What is wrong.
    pub why: &'static str,
}

impl S3Url {
    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without slashes at either end.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of `rel` under the prefix.
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() { rel.to_owned() } else { format!("{}/{rel}", self.prefix) }
    }

    /// This location with `sub` appended to the prefix.
    pub fn join(&self, sub: &str) -> S3Url {
        S3Url { bucket: self.bucket.clone(), prefix: self.key(sub.trim_matches('/')) }
    }

    /// Whether `text` looks like an S3 location (starts with `s3://`).
    pub fn is_s3(text: &str) -> bool {
        text.starts_with("s3://")
    }
}

impl FromStr for S3Url {
    type Err = S3UrlError;

    /// ```
    /// # use pkgcell::s3::S3Url;
    /// let u: S3Url = "s3://repo/arch/pkgs/".parse().unwrap();
    /// assert_eq!((u.bucket(), u.prefix()), ("repo", "arch/pkgs"));
    /// assert_eq!(u.to_string(), "s3://repo/arch/pkgs");
    /// ```
    fn from_str(s: &str) -> Result<S3Url, S3UrlError> {
        let err = |why| S3UrlError { url: s.to_owned(), why };
        let rest = s.strip_prefix("s3://").ok_or_else(|| err("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // The S3 bucket naming rules, loosely: what a path-style URL can carry.
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(err("the bucket name must be 3-63 characters of a-z, 0-9, '-' and '.'"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|c| c == "." || c == "..") || prefix.contains("//") {
            return Err(err("the prefix must not contain '.', '..' or empty components"));
        }
        Ok(S3Url { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() { write!(f, "s3://{}", self.bucket) } else { write!(f, "s3://{}/{}", self.bucket, self.prefix) }
    }
}

/// Bucket addressing: `http://endpoint/bucket/key` or `http://bucket.endpoint/key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressStyle {
    /// `endpoint/bucket/key`: what most self-hosted servers want.
    Path,
    /// `bucket.endpoint/key`: what AWS prefers.
    VirtualHost,
}

/// Where the S3 service is; each field unset falls back to the environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`), then to AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// The service URL (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unset anywhere).
    pub region: Option<String>,
    /// Addressing (path style with an explicit endpoint, virtual host for AWS).
    pub style: Option<AddressStyle>,
}

/// An S3 request that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The endpoint is not a usable URL.
    #[error("S3 endpoint {endpoint:?} is not a usable http(s) URL (check `[s3] endpoint` or AWS_ENDPOINT_URL)")]
    BadEndpoint {
        /// The endpoint.
        endpoint: String,
    },
    /// No credentials in the environment.
    #[error("no S3 credentials for {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    NoCredentials {
        /// The endpoint.
        endpoint: String,
    },
    /// The server could not be reached at all.
    #[error("cannot reach the S3 endpoint {endpoint} ({what}): check `[s3] endpoint` or AWS_ENDPOINT_URL, and that the server is up")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The request.
        what: String,
        /// The cause.
        #[source]
        source: ureq::Error,
    },
    /// The server refused the credentials or the signature.
    #[error("the S3 endpoint {endpoint} refused {what} with HTTP {status} {code}: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the region ({region})")]
    Denied {
        /// The endpoint.
        endpoint: String,
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The S3 error code (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, ...).
        code: String,
        /// The region signed for.
        region: String,
    },
    /// The bucket is not there.
    #[error("the S3 endpoint {endpoint} has no bucket {bucket:?}: create it, or check the s3:// URL and `[s3] path_style`")]
    NoBucket {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
    },
    /// Any other refusal.
    #[error("the S3 endpoint {endpoint} answered {what} with HTTP {status} {code}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The S3 error code, or the start of the body.
        code: String,
    },
    /// A listing could not be parsed.
    #[error("cannot parse the object listing of s3://{bucket} from {endpoint}")]
    BadListing {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The parser's complaint.
        message: String,
    },
    /// A local file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoPath),
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag without quotes: the MD5 of the content for a plain PUT.
    pub etag: String,
}

/// A connection to one bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    bucket: Bucket,
    credentials: Credentials,
    endpoint: String,
    agent: ureq::Agent,
}

impl S3Client {
    /// A client for `url`'s bucket with `settings`, credentials from the
    /// environment. Sends nothing yet.
    pub fn new(url: &S3Url, settings: &S3Settings) -> Result<S3Client, S3Error> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let region = settings
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let explicit = settings.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL_S3")).or_else(|| env("AWS_ENDPOINT_URL"));
        let style = settings.style.unwrap_or(if explicit.is_some() { AddressStyle::Path } else { AddressStyle::VirtualHost });
        let endpoint = explicit.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let bad = || S3Error::BadEndpoint { endpoint: endpoint.clone() };
        let parsed: url::Url = endpoint.parse().map_err(|_| bad())?;
        let url_style = match style {
            AddressStyle::Path => UrlStyle::Path,
            AddressStyle::VirtualHost => UrlStyle::VirtualHost,
        };
        let bucket = Bucket::new(parsed, url_style, url.bucket().to_owned(), region).map_err(|_| bad())?;
        let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) else {
            return Err(S3Error::NoCredentials { endpoint });
        };
        let credentials = match env("AWS_SESSION_TOKEN") {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(S3Client { bucket, credentials, endpoint, agent })
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            if !prefix.is_empty() {
                action.with_prefix(prefix);
            }
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let what = format!("list s3://{}/{prefix}", self.bucket.name());
            let resp = self.send(self.agent.get(action.sign(SIGN_FOR).as_str()).call(), &what)?;
            let text = self.ok_body(resp, &what)?;
            let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| S3Error::BadListing {
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.name().to_owned(),
                message: e.to_string(),
            })?;
            for c in parsed.contents {
                let etag = c.etag.unwrap_or_default().trim_matches('"').to_owned();
                out.push(ObjectInfo { key: c.key, size: c.size.unwrap_or(0), etag });
            }
            match parsed.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// One listing of at most one key under `prefix`: checks the endpoint,
    /// the bucket and the credentials.
    pub fn probe(&self, prefix: &str) -> Result<(), S3Error> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        action.with_prefix(prefix);
        action.with_max_keys(1);
        let what = format!("list s3://{}/{prefix}", self.bucket.name());
        let resp = self.send(self.agent.get(action.sign(SIGN_FOR).as_str()).call(), &what)?;
        self.ok_body(resp, &what).map(drop)
    }

    /// The size of `key`, or `None` when there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let action = self.bucket.head_object(Some(&self.credentials), key);
        let what = format!("HEAD {}", self.show(key));
        let resp = self.send(self.agent.head(action.sign(SIGN_FOR).as_str()).call(), &what)?;
        // HEAD has no body to tell "no such key" from "no such bucket": a
        // missing bucket reads as a missing object here, and the first
        // listing or PUT names it.
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = self.check(resp, &what)?;
        Ok(resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()))
    }

    /// A reader of `key`'s content, or `None` when there is no such object.
    pub fn get(&self, key: &str) -> Result<Option<impl Read + use<>>, S3Error> {
        let action = self.bucket.get_object(Some(&self.credentials), key);
        let what = format!("GET {}", self.show(key));
        let resp = self.send(self.agent.get(action.sign(SIGN_FOR).as_str()).call(), &what)?;
        match self.check(resp, &what) {
            Ok(resp) => Ok(Some(resp.into_body().into_reader())),
            Err(S3Error::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Upload the file at `path` as `key`.
    pub fn put_file(&self, key: &str, path: &Path) -> Result<(), S3Error> {
        let file = File::open(path).map_err(|source| IoPath::new("open", path.to_owned(), source))?;
        let action = self.bucket.put_object(Some(&self.credentials), key);
        let what = format!("PUT {}", self.show(key));
        let resp = self.send(self.agent.put(action.sign(SIGN_FOR).as_str()).send(file), &what)?;
        self.check(resp, &what).map(drop)
    }

    /// Upload `data` as `key`.
    pub fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), S3Error> {
        let action = self.bucket.put_object(Some(&self.credentials), key);
        let what = format!("PUT {}", self.show(key));
        let resp = self.send(self.agent.put(action.sign(SIGN_FOR).as_str()).send(data), &what)?;
        self.check(resp, &what).map(drop)
    }

    /// Delete `key` (no error if it is already gone).
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let action = self.bucket.delete_object(Some(&self.credentials), key);
        let what = format!("DELETE {}", self.show(key));
        let resp = self.send(self.agent.delete(action.sign(SIGN_FOR).as_str()).call(), &what)?;
        match self.check(resp, &what) {
            Ok(_) | Err(S3Error::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn show(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket.name())
    }

    fn send(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, S3Error> {
        r.map_err(|source| S3Error::Unreachable { endpoint: self.endpoint.clone(), what: what.to_owned(), source })
    }

    fn ok_body(&self, resp: ureq::http::Response<ureq::Body>, what: &str) -> Result<String, S3Error> {
        let resp = self.check(resp, what)?;
        let mut body = resp.into_body();
        body.with_config().limit(64 << 20).read_to_string().map_err(|source| S3Error::Unreachable {
            endpoint: self.endpoint.clone(),
            what: what.to_owned(),
            source,
        })
    }

    fn check(&self, resp: ureq::http::Response<ureq::Body>, what: &str) -> Result<ureq::http::Response<ureq::Body>, S3Error> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let mut body = resp.into_body();
        let text = body.with_config().limit(1 << 16).read_to_string().unwrap_or_default();
        let code = xml_tag(&text, "Code").unwrap_or_else(|| text.chars().take(120).collect());
        let endpoint = self.endpoint.clone();
        let what = what.to_owned();
        // A 404 is "no such key" or "no such bucket"; `check` turns the
        // second into NoBucket, so callers may take any other 404 as absent.
        Err(match (status, code.as_str()) {
            (_, "NoSuchBucket") => S3Error::NoBucket { endpoint, bucket: self.bucket.name().to_owned() },
            (401 | 403, _) => S3Error::Denied { endpoint, what, status, code, region: self.bucket.region().to_owned() },
            _ => S3Error::Status { endpoint, what, status, code },
        })
    }
}

/// The text of the first `<tag>…</tag>` in an S3 error body.
fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse_and_print_back() {
        for (text, bucket, prefix, shown) in [
            ("s3://bucket", "bucket", "", "s3://bucket"),
            ("s3://bucket/", "bucket", "", "s3://bucket"),
            ("s3://my.bucket-1/a/b/", "my.bucket-1", "a/b", "s3://my.bucket-1/a/b"),
        ] {
            let u: S3Url = text.parse().unwrap();
            assert_eq!((u.bucket(), u.prefix()), (bucket, prefix), "{text}");
            assert_eq!(u.to_string(), shown);
            assert_eq!(u.to_string().parse::<S3Url>().unwrap(), u);
        }
        let u: S3Url = "s3://bucket/p".parse().unwrap();
        assert_eq!(u.key("x86_64/a.db"), "p/x86_64/a.db");
        assert_eq!(u.join("store/").key("records"), "p/store/records");
    }

    #[test]
    fn bad_s3_urls_say_why() {
        for bad in ["http://bucket/x", "s3://", "s3://ab", "s3://Bucket", "s3://b_c", "s3://bucket/a/../b", "s3://bucket/a//b"] {
            let e = bad.parse::<S3Url>().unwrap_err();
            assert_eq!(e.url, bad);
            assert!(e.to_string().contains("expected s3://BUCKET"), "{e}");
        }
    }

    #[test]
    fn error_codes_are_read_from_s3_error_bodies() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error>";
        assert_eq!(xml_tag(body, "Code").as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(xml_tag("nothing", "Code"), None);
    }
}
