//! HTTP requests as the warden's egress proxy sees them, and the operations of known APIs
//! read from them, so request rules can say "delete a namespace" instead of a path regex.
//!
//! [`operation`] recognises, in this order:
//!
//! | API | from | operation |
//! |---|---|---|
//! | AWS JSON protocol | `X-Amz-Target: DynamoDB_20120810.DeleteTable` | `aws:dynamodb:DeleteTable` |
//! | AWS query protocol | `Action=TerminateInstances` in the query or a form body | `aws:ec2:TerminateInstances` |
//! | Amazon S3 (REST) | method and path on an `s3` host of `amazonaws.com` | `aws:s3:DeleteBucket`, `aws:s3:DeleteObject`, … |
//! | Kubernetes | `/api/v1/…`, `/apis/<group>/<version>/…` | `k8s:<verb>:<resource>[/<subresource>]`, and the namespace |
//! | Google Cloud | `*.googleapis.com`, method and the last collection of the path | `gcp:<service>:<verb>:<collection>` |
//! | Azure Resource Manager | `management.azure.com`, method and the resource type | `azure:<verb>:<Provider>/<type>` |
//! | anything else | method and path | `<METHOD> <path>` |
//!
//! The AWS service is the first label of an `amazonaws.com` host; elsewhere (a test double,
//! an endpoint override) it is the `X-Amz-Target` prefix before `_`, lower-cased, or `aws`.
//! Kubernetes verbs follow the API server's: `get`/`list`/`watch`, `create`, `update`,
//! `patch`, `delete`, `deletecollection`.

/// One request: what the proxy read before judging it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// Upper-case.
    pub method: String,
    /// `https` or `http`.
    pub scheme: String,
    /// Lower-case, without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, as sent.
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body, or its first bytes.
    pub body: Vec<u8>,
}

/// What [`operation`] recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `aws`, `k8s`, `gcp`, `azure` or `http`.
    pub api: &'static str,
    /// The operation string rules match (see the module documentation).
    pub name: String,
    /// The Kubernetes namespace the request is about (for `namespaces` itself, its name).
    pub namespace: Option<String>,
}

impl HttpRequest {
    /// The value of the first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    /// The query string (without `?`).
    pub fn query(&self) -> &str {
        self.path
            .split_once('?')
            .map_or("", |(_, q)| q.split('#').next().unwrap_or(""))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Parameters of the query and, for a form body, of the body; decoded.
    pub fn params(&self) -> Vec<(String, String)> {
        let mut out = parse_form(self.query());
        let form = self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if form {
            out.extend(parse_form(&self.body_text()));
        }
        out
    }

    /// Parses the example form used in policy packs: a request line `METHOD URL`, then
    /// optional `Name: value` header lines, then an empty line and the body.
    ///
    /// ```text
    /// POST https://ec2.us-east-1.amazonaws.com/
    /// Content-Type: application/x-www-form-urlencoded
    ///
    /// Action=TerminateInstances&InstanceId.1=i-0abc
    /// ```
    pub fn parse_example(text: &str) -> Result<HttpRequest, String> {
        let (head, body) = match text.split_once("\n\n") {
            Some((h, b)) => (h, b),
            None => (text, ""),
        };
        let mut lines = head.lines();
        let first = lines.next().unwrap_or("").trim();
        let (method, url) = first
            .split_once(' ')
            .ok_or_else(|| format!("`{first}` is not `METHOD URL`"))?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an absolute http(s) URL"))?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            other => return Err(format!("scheme `{other}` is not http or https")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => match rest.find('?') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            },
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| format!("bad port in `{authority}`"))?,
            ),
            _ => (authority, default_port),
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("header line `{line}` is not `Name: value`"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        Ok(HttpRequest {
            method: method.to_ascii_uppercase(),
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            port,
            path: if path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_string()
            },
            headers,
            body: body.as_bytes().to_vec(),
        })
    }

    /// `METHOD scheme://host[:port]path`, as verdicts show it.
    pub fn display(&self) -> String {
        let default = matches!(
            (self.scheme.as_str(), self.port),
            ("https", 443) | ("http", 80)
        );
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if default {
            format!("{} {}://{host}{}", self.method, self.scheme, self.path)
        } else {
            format!(
                "{} {}://{host}:{}{}",
                self.method, self.scheme, self.port, self.path
            )
        }
    }
}

/// `a=1&b=x%20y` decoded into pairs.
fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The operation of a request (see the module documentation).
pub fn operation(req: &HttpRequest) -> Operation {
    aws(req)
        .or_else(|| kubernetes(req))
        .or_else(|| gcp(req))
        .or_else(|| azure(req))
        .unwrap_or_else(|| Operation {
            api: "http",
            name: format!("{} {}", req.method, req.path_only()),
            namespace: None,
        })
}

fn aws_service_from_host(host: &str) -> Option<&str> {
    host.strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
        .and_then(|h| h.split('.').next())
        .filter(|s| !s.is_empty())
}

fn aws(req: &HttpRequest) -> Option<Operation> {
    let host_service = aws_service_from_host(&req.host);
    if let Some(target) = req.header("x-amz-target") {
        let (prefix, action) = target.rsplit_once('.')?;
        let service = host_service.map(str::to_string).unwrap_or_else(|| {
            prefix
                .split('_')
                .next()
                .unwrap_or(prefix)
                .to_ascii_lowercase()
        });
        return Some(Operation {
            api: "aws",
            name: format!("aws:{service}:{action}"),
            namespace: None,
        });
    }
    if let Some((_, action)) = req.params().into_iter().find(|(k, _)| k == "Action") {
        let service = host_service.unwrap_or("aws");
        return Some(Operation {
            api: "aws",
            name: format!("aws:{service}:{action}"),
            namespace: None,
        });
    }
    host_service?;
    s3(req)
}

/// S3's REST API: path-style (`s3.<region>.amazonaws.com/<bucket>/<key>`) or
/// virtual-hosted (`<bucket>.s3.<region>.amazonaws.com/<key>`).
fn s3(req: &HttpRequest) -> Option<Operation> {
    let labels: Vec<&str> = req.host.split('.').collect();
    let s3_at = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-") || *l == "s3-accelerate")?;
    let path = req.path_only().trim_start_matches('/');
    let (bucket_named, key) = if s3_at == 0 {
        match path.split_once('/') {
            Some((b, k)) => (!b.is_empty(), k),
            None => (!path.is_empty(), ""),
        }
    } else {
        (true, path)
    };
    if !bucket_named {
        return Some(op_s3(if req.method == "GET" {
            "ListBuckets"
        } else {
            "Unknown"
        }));
    }
    let q = req.query();
    let has = |name: &str| parse_form(q).iter().any(|(k, _)| k == name);
    let name = match (req.method.as_str(), key.is_empty()) {
        ("DELETE", true) if has("policy") => "DeleteBucketPolicy",
        ("DELETE", true) if has("lifecycle") => "DeleteBucketLifecycle",
        ("DELETE", true) if has("encryption") => "DeleteBucketEncryption",
        ("DELETE", true) => "DeleteBucket",
        ("DELETE", false) => "DeleteObject",
        ("POST", true) if has("delete") => "DeleteObjects",
        ("PUT", true) if has("policy") => "PutBucketPolicy",
        ("PUT", true) if has("versioning") => "PutBucketVersioning",
        ("PUT", true) => "CreateBucket",
        ("PUT", false) => "PutObject",
        ("GET", true) => "ListObjects",
        ("GET", false) => "GetObject",
        ("HEAD", _) => "HeadObject",
        _ => "Unknown",
    };
    Some(op_s3(name))
}

fn op_s3(name: &str) -> Operation {
    Operation {
        api: "aws",
        name: format!("aws:s3:{name}"),
        namespace: None,
    }
}

fn kubernetes(req: &HttpRequest) -> Option<Operation> {
    let path = req.path_only();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", group, version, rest @ ..] if group.contains('.') || is_version(version) => rest,
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, more @ ..] if !more.is_empty() => (Some(ns.to_string()), more),
        _ => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [] => return None,
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, s, ..] => (*r, Some(*n), Some(*s)),
    };
    let watch = parse_form(req.query())
        .iter()
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    let verb = match (req.method.as_str(), name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => return Some(k8s(other.to_ascii_lowercase(), resource, sub, namespace)),
    };
    let namespace = if resource == "namespaces" {
        name.map(str::to_string).or(namespace)
    } else {
        namespace
    };
    Some(k8s(verb.to_string(), resource, sub, namespace))
}

fn k8s(verb: String, resource: &str, sub: Option<&str>, namespace: Option<String>) -> Operation {
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    Operation {
        api: "k8s",
        name: format!("k8s:{verb}:{resource}"),
        namespace,
    }
}

fn is_version(s: &str) -> bool {
    s.strip_prefix('v')
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_digit())
}

fn gcp(req: &HttpRequest) -> Option<Operation> {
    let service = req
        .host
        .strip_suffix(".googleapis.com")?
        .split('.')
        .next()?;
    let path = req.path_only();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let start = segs.iter().position(|s| is_version(s)).map_or(0, |i| i + 1);
    let rest = &segs[start.min(segs.len())..];
    let (last, custom) = match rest.last() {
        Some(l) => match l.split_once(':') {
            Some((base, verb)) => (Some(base), Some(verb)),
            None => (Some(*l), None),
        },
        None => (None, None),
    };
    let with_id = rest.len().is_multiple_of(2);
    let collection = if rest.is_empty() {
        ""
    } else if with_id {
        rest[rest.len() - 2]
    } else {
        last.unwrap_or("")
    };
    let verb = match (custom, req.method.as_str(), with_id) {
        (Some(v), _, _) => v.to_string(),
        (None, "DELETE", _) => "delete".into(),
        (None, "GET", true) => "get".into(),
        (None, "GET", false) => "list".into(),
        (None, "POST", _) => "create".into(),
        (None, "PATCH", _) => "patch".into(),
        (None, "PUT", _) => "update".into(),
        (None, other, _) => other.to_ascii_lowercase(),
    };
    Some(Operation {
        api: "gcp",
        name: format!("gcp:{service}:{verb}:{collection}"),
        namespace: None,
    })
}

fn azure(req: &HttpRequest) -> Option<Operation> {
    if req.host != "management.azure.com" {
        return None;
    }
    let segs: Vec<&str> = req
        .path_only()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let verb = |has_action: Option<&str>| match (has_action, req.method.as_str()) {
        (Some(a), _) => a.to_string(),
        (None, "DELETE") => "delete".into(),
        (None, "PUT") => "write".into(),
        (None, "PATCH") => "write".into(),
        (None, "GET") => "read".into(),
        (None, other) => other.to_ascii_lowercase(),
    };
    let resource = match lower.iter().position(|s| s == "providers") {
        Some(p) => {
            // providers/<Namespace>/<type>/<name>[/<subtype>/<name>…][/<action>]
            let after = &segs[p + 1..];
            let namespace = after.first()?;
            let mut types = vec![namespace.to_string()];
            let pairs = &after[1..];
            let mut action = None;
            for (i, chunk) in pairs.chunks(2).enumerate() {
                if chunk.len() == 2 || i == 0 {
                    types.push(chunk[0].to_string());
                } else if req.method == "POST" {
                    action = Some(chunk[0]);
                } else {
                    types.push(chunk[0].to_string());
                }
            }
            let name = format!("azure:{}:{}", verb(action), types.join("/"));
            return Some(Operation {
                api: "azure",
                name,
                namespace: None,
            });
        }
        None => match lower.as_slice() {
            [s, _, rg, _] if s == "subscriptions" && rg == "resourcegroups" => "resourceGroups",
            [s, _] if s == "subscriptions" => "subscriptions",
            _ => return None,
        },
    };
    Some(Operation {
        api: "azure",
        name: format!("azure:{}:{resource}", verb(None)),
        namespace: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn op(example: &str) -> (String, Option<String>) {
        let o = operation(&HttpRequest::parse_example(example).unwrap());
        (o.name, o.namespace)
    }

    #[test]
    fn operations_of_known_apis() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "DELETE https://k8s.test:6443/api/v1/namespaces/prod",
                "k8s:delete:namespaces",
                Some("prod"),
            ),
            (
                "GET https://k8s.test/api/v1/namespaces",
                "k8s:list:namespaces",
                None,
            ),
            (
                "GET https://k8s.test/api/v1/namespaces/prod/pods?watch=true",
                "k8s:watch:pods",
                Some("prod"),
            ),
            (
                "DELETE https://k8s.test/apis/apps/v1/namespaces/prod/deployments/web",
                "k8s:delete:deployments",
                Some("prod"),
            ),
            (
                "DELETE https://k8s.test/apis/apps/v1/namespaces/prod/deployments",
                "k8s:deletecollection:deployments",
                Some("prod"),
            ),
            (
                "PATCH https://k8s.test/apis/apps/v1/namespaces/prod/deployments/web/scale",
                "k8s:patch:deployments/scale",
                Some("prod"),
            ),
            (
                "DELETE https://k8s.test/api/v1/nodes/node-1",
                "k8s:delete:nodes",
                None,
            ),
            (
                "POST https://k8s.test/api/v1/namespaces/prod/pods/web-0/exec",
                "k8s:create:pods/exec",
                Some("prod"),
            ),
            (
                "POST https://ec2.us-east-1.amazonaws.com/\nContent-Type: application/x-www-form-urlencoded\n\nAction=TerminateInstances&InstanceId.1=i-1",
                "aws:ec2:TerminateInstances",
                None,
            ),
            (
                "GET https://ec2.amazonaws.com/?Action=DescribeInstances&Version=2016-11-15",
                "aws:ec2:DescribeInstances",
                None,
            ),
            (
                "GET https://aws.test/?Action=TerminateInstances",
                "aws:aws:TerminateInstances",
                None,
            ),
            (
                "POST https://dynamodb.us-east-1.amazonaws.com/\nX-Amz-Target: DynamoDB_20120810.DeleteTable\n\n{\"TableName\":\"t\"}",
                "aws:dynamodb:DeleteTable",
                None,
            ),
            (
                "POST https://aws.test/\nX-Amz-Target: DynamoDB_20120810.ListTables",
                "aws:dynamodb:ListTables",
                None,
            ),
            (
                "DELETE https://my-bucket.s3.eu-west-1.amazonaws.com/",
                "aws:s3:DeleteBucket",
                None,
            ),
            (
                "DELETE https://s3.amazonaws.com/my-bucket",
                "aws:s3:DeleteBucket",
                None,
            ),
            (
                "DELETE https://s3.amazonaws.com/my-bucket/a/b.txt",
                "aws:s3:DeleteObject",
                None,
            ),
            (
                "GET https://my-bucket.s3.amazonaws.com/a.txt",
                "aws:s3:GetObject",
                None,
            ),
            (
                "DELETE https://compute.googleapis.com/compute/v1/projects/p/zones/z/instances/vm-1",
                "gcp:compute:delete:instances",
                None,
            ),
            (
                "GET https://compute.googleapis.com/compute/v1/projects/p/zones/z/instances",
                "gcp:compute:list:instances",
                None,
            ),
            (
                "POST https://compute.googleapis.com/compute/v1/projects/p/zones/z/instances/vm-1/stop",
                "gcp:compute:create:stop",
                None,
            ),
            (
                "DELETE https://cloudresourcemanager.googleapis.com/v3/projects/p",
                "gcp:cloudresourcemanager:delete:projects",
                None,
            ),
            (
                "DELETE https://management.azure.com/subscriptions/s/resourcegroups/rg?api-version=2021-04-01",
                "azure:delete:resourceGroups",
                None,
            ),
            (
                "DELETE https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm?api-version=1",
                "azure:delete:Microsoft.Compute/virtualMachines",
                None,
            ),
            (
                "POST https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/powerOff",
                "azure:powerOff:Microsoft.Compute/virtualMachines",
                None,
            ),
            (
                "DELETE https://api.github.com/repos/o/r",
                "DELETE /repos/o/r",
                None,
            ),
        ];
        for (example, name, ns) in cases {
            assert_eq!(
                op(example),
                (name.to_string(), ns.map(str::to_string)),
                "{example}"
            );
        }
    }

    #[test]
    fn examples_parse_into_requests() {
        let r = HttpRequest::parse_example(
            "patch https://API.github.com:8443/repos/o/r/git/refs/heads/main?x=1\nContent-Type: application/json\n\n{\"force\": true}",
        )
        .unwrap();
        assert_eq!(
            r,
            HttpRequest {
                method: "PATCH".into(),
                scheme: "https".into(),
                host: "api.github.com".into(),
                port: 8443,
                path: "/repos/o/r/git/refs/heads/main?x=1".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: b"{\"force\": true}".to_vec(),
            }
        );
        assert_eq!(r.path_only(), "/repos/o/r/git/refs/heads/main");
        assert_eq!(r.query(), "x=1");
        assert_eq!(
            r.display(),
            "PATCH https://api.github.com:8443/repos/o/r/git/refs/heads/main?x=1"
        );
        for bad in [
            "GET",
            "GET example.com/x",
            "GET ftp://x/",
            "GET https:///x",
            "GET https://h/\nbad header",
        ] {
            assert!(HttpRequest::parse_example(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_form("Action=Delete%20Me&x=a+b&y"),
            vec![
                ("Action".into(), "Delete Me".into()),
                ("x".into(), "a b".into()),
                ("y".into(), String::new())
            ]
        );
    }
}
