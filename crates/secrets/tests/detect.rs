//! Detection quality, measured and printed:
//!
//! - recall on a generated corpus of realistic secrets in realistic surroundings (env files,
//!   YAML, JSON, INI, kubeconfig, Docker config, shell history, curl, logs), every value
//!   random with the right alphabet and length from a fixed-seed PRNG: no real secret here;
//! - false positives per MiB on real text of this machine (/usr/share/doc, man pages, Rust
//!   sources of the cargo registry), read in sorted order up to a fixed budget;
//! - tables of whole results: every rule's examples through the public API, the global
//!   allowlist, privacy mode, merging, and UTF-8 boundaries;
//! - gitleaks' own rules (tests/reference/gitleaks, MIT) over the same corpus and the same real
//!   text, as an oracle: how hard the corpus is, and where each rule set stands.
//!
//! The corpus and the rules were written by the same hand, so its recall flatters them; the
//! `unplanned-contexts` kind was written after the rules, and its first measurement (12 of 30,
//! before the fixes it prompted) is the better guide to text nobody planned for. The false-
//! positive budget is 8 MiB (`STAKPAK_DETECT_FP_MIB` raises it; the rules were tuned on the
//! first 160 MiB, so a larger budget is the held-out measurement).
//!
//! Run with `--nocapture` to see the numbers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Read,
    ops::Range,
    path::{Path, PathBuf},
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use stakpak_secrets::detect::{DetectOptions, Detection, Detector};

fn detector() -> Detector {
    Detector::new(DetectOptions::default()).unwrap()
}

fn private() -> Detector {
    Detector::new(DetectOptions { privacy: true }).unwrap()
}

// --- a small deterministic PRNG and value alphabets --------------------------------------

use support::rng::XorShiftStar as Rng;

impl Rng {
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn from(&mut self, alphabet: &str, n: usize) -> String {
        let a = alphabet.as_bytes();
        loop {
            let s: String = (0..n).map(|_| a[self.below(a.len())] as char).collect();
            // Random strings that happen to look like placeholders are not fair tests.
            let l = s.to_ascii_lowercase();
            let bad = ["xxxx", "abcdefgh", "01234567", "12345678", "example", "***"];
            if !bad.iter().any(|b| l.contains(b)) {
                return s;
            }
        }
    }

    fn alnum(&mut self, n: usize) -> String {
        self.from(ALNUM, n)
    }
    fn alnum_in(&mut self, lo: usize, hi: usize) -> String {
        let n = self.range(lo, hi);
        self.alnum(n)
    }
    fn word_in(&mut self, lo: usize, hi: usize) -> String {
        let n = self.range(lo, hi);
        self.word(n)
    }
    fn hex(&mut self, n: usize) -> String {
        self.from("0123456789abcdef", n)
    }
    fn b64(&mut self, n: usize) -> String {
        self.from(B64, n)
    }
    fn word(&mut self, n: usize) -> String {
        // [A-Za-z0-9_-], not starting or ending with a separator.
        let mut s = self.from(W, n);
        s.replace_range(0..1, &self.alnum(1));
        let last = s.len() - 1;
        s.replace_range(last..last + 1, &self.alnum(1));
        s
    }
    fn digits(&mut self, n: usize) -> String {
        let mut s = self.from("123456789", 1);
        s.push_str(&self.from("0123456789", n - 1));
        s
    }
    fn lower(&mut self, n: usize) -> String {
        self.from("abcdefghijklmnopqrstuvwxyz", n)
    }
    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(4),
            self.hex(4),
            self.hex(12)
        )
    }
    /// A password as people and generators make them: letters, digits, a few symbols.
    fn password(&mut self, lo: usize, hi: usize, symbols: &str) -> String {
        let n = self.range(lo, hi);
        let mut s = self.alnum(2);
        s.push_str(&self.from(&format!("{ALNUM}{symbols}"), n - 3));
        s.push_str(&self.from("0123456789", 1));
        s
    }
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const W: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const B32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn b64_of(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn b64url_of(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A PEM private key with a random body of the right shape; returns (armoured text with
/// the body marked «…», kind).
fn pem(rng: &mut Rng) -> String {
    let kinds = [
        ("RSA PRIVATE KEY", 64, 25, ""),
        ("EC PRIVATE KEY", 64, 3, ""),
        ("OPENSSH PRIVATE KEY", 70, 7, ""),
        ("PRIVATE KEY", 64, 26, ""),
        ("ENCRYPTED PRIVATE KEY", 64, 27, ""),
        (
            "RSA PRIVATE KEY",
            64,
            25,
            "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,",
        ),
        ("DSA PRIVATE KEY", 64, 11, ""),
        ("PGP PRIVATE KEY BLOCK", 64, 30, "Version: GnuPG v2\n"),
    ];
    let &(kind, width, lines, header) = rng.pick(&kinds);
    let mut body = String::new();
    if !header.is_empty() {
        body.push_str(header);
        if header.ends_with(',') {
            let iv = rng.hex(32).to_uppercase();
            body.push_str(&iv);
            body.push('\n');
        }
        body.push('\n');
    }
    for i in 0..lines {
        if i > 0 {
            body.push('\n');
        }
        body.push_str(&rng.b64(width));
    }
    let tail = rng.range(4, width / 4) * 4 - 2;
    body.push('\n');
    body.push_str(&rng.b64(tail));
    body.push_str("==");
    format!("-----BEGIN {kind}-----\n«{body}»\n-----END {kind}-----")
}

fn jwt(rng: &mut Rng, header: &str, payload: &str, sig: usize) -> String {
    format!(
        "{}.{}.{}",
        b64url_of(header.as_bytes()),
        b64url_of(payload.as_bytes()),
        rng.word(sig)
    )
}

fn k8s_token(rng: &mut Rng) -> String {
    let ns = rng
        .pick(&["default", "ci", "monitoring", "kube-system"])
        .to_string();
    let sa = rng
        .pick(&["deployer", "argocd-server", "prometheus", "builder"])
        .to_string();
    let header = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, rng.word(43));
    let payload = if rng.below(2) == 0 {
        format!(
            r#"{{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":{},"iat":{},"iss":"https://kubernetes.default.svc.cluster.local","kubernetes.io":{{"namespace":"{ns}","serviceaccount":{{"name":"{sa}","uid":"{}"}}}},"nbf":1735689600,"sub":"system:serviceaccount:{ns}:{sa}"}}"#,
            rng.digits(10),
            rng.digits(10),
            rng.uuid()
        )
    } else {
        format!(
            r#"{{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"{ns}","kubernetes.io/serviceaccount/secret.name":"{sa}-token-{}","kubernetes.io/serviceaccount/service-account.name":"{sa}","sub":"system:serviceaccount:{ns}:{sa}"}}"#,
            rng.lower(5)
        )
    };
    jwt(rng, &header, &payload, 342)
}

// --- the recall corpus -------------------------------------------------------------------

/// One planted secret: its kind, the document around it, and where the value is.
struct Case {
    kind: &'static str,
    text: String,
    secret: Range<usize>,
}

/// Builds a case from a document whose secret is marked «…».
fn case(kind: &'static str, marked: String) -> Case {
    let open = marked
        .find('«')
        .unwrap_or_else(|| panic!("{kind}: no mark"));
    let close = marked
        .find('»')
        .unwrap_or_else(|| panic!("{kind}: no mark"));
    let inner = &marked[open + '«'.len_utf8()..close];
    let text = format!(
        "{}{}{}",
        &marked[..open],
        inner,
        &marked[close + '»'.len_utf8()..]
    );
    Case {
        kind,
        secret: open..open + inner.len(),
        text,
    }
}

type Generator = fn(&mut Rng) -> String;

/// Every kind with the documents it appears in; each returns a document with the value
/// marked. A generator is called several times, choosing among its surroundings.
fn generators() -> Vec<(&'static str, Generator)> {
    vec![
        ("aws-access-key-id", |r| {
            let v = format!("{}{}", r.pick(&["AKIA", "ASIA"]), r.from(B32, 16));
            match r.below(4) {
                0 => format!(
                    "[default]\naws_access_key_id = «{v}»\nregion = eu-west-1\noutput = json"
                ),
                1 => format!("export AWS_ACCESS_KEY_ID=«{v}»"),
                2 => format!(
                    "{{\n    \"Credentials\": {{\n        \"AccessKeyId\": \"«{v}»\",\n        \"Expiration\": \"2025-03-01T12:00:00Z\"\n    }}\n}}"
                ),
                _ => format!(
                    "2025-02-11T09:14:03Z INFO botocore.credentials Found credentials in environment variables: «{v}»"
                ),
            }
        }),
        ("aws-secret-access-key", |r| {
            let v = r.b64(40);
            match r.below(4) {
                0 => format!("[prod]\naws_secret_access_key = «{v}»"),
                1 => format!("AWS_SECRET_ACCESS_KEY=«{v}»"),
                2 => format!("        \"SecretAccessKey\": \"«{v}»\","),
                _ => format!("$ aws configure set aws_secret_access_key «{v}» --profile ci"),
            }
        }),
        ("aws-session-token", |r| {
            let n = r.range(200, 400);
            let v = format!("IQoJb3JpZ2luX2VjE{}", r.b64(n));
            match r.below(3) {
                0 => format!("aws_session_token = «{v}»"),
                1 => format!("        \"SessionToken\": \"«{v}»\","),
                _ => format!("export AWS_SESSION_TOKEN=\"«{v}»\""),
            }
        }),
        ("gcp-service-account", |r| {
            let mut body = format!("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{}", r.b64(32));
            for _ in 0..r.range(20, 25) {
                body.push_str("\\n");
                body.push_str(&r.b64(64));
            }
            format!(
                "{{\n  \"type\": \"service_account\",\n  \"project_id\": \"acme-prod-{}\",\n  \"private_key_id\": \"{}\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n«{body}»\\n-----END PRIVATE KEY-----\\n\",\n  \"client_email\": \"deployer@acme-prod.iam.gserviceaccount.com\",\n  \"client_id\": \"{}\"\n}}",
                r.digits(6),
                r.hex(40),
                r.digits(21)
            )
        }),
        ("gcp-api-key", |r| {
            let v = format!("AIza{}", r.word(35));
            match r.below(3) {
                0 => format!(
                    "curl 'https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=«{v}»'"
                ),
                1 => format!("GOOGLE_API_KEY=«{v}»"),
                _ => format!(
                    "const firebaseConfig = {{ apiKey: \"«{v}»\", authDomain: \"acme.firebaseapp.com\" }};"
                ),
            }
        }),
        ("gcp-oauth-client-secret", |r| {
            let v = format!("GOCSPX-{}", r.word(28));
            format!(
                "{{\"installed\":{{\"client_id\":\"{}.apps.googleusercontent.com\",\"client_secret\":\"«{v}»\"}}}}",
                r.digits(12)
            )
        }),
        ("azure-storage-account-key", |r| {
            let v = format!("{}==", r.b64(86));
            match r.below(3) {
                0 => format!(
                    "AZURE_STORAGE_CONNECTION_STRING=\"DefaultEndpointsProtocol=https;AccountName=st{};AccountKey=«{v}»;EndpointSuffix=core.windows.net\"",
                    r.lower(8)
                ),
                1 => format!("export AZURE_STORAGE_KEY='«{v}»'"),
                _ => format!(
                    "az storage blob upload --account-name stbackups --account-key «{v}» -c db -f dump.sql"
                ),
            }
        }),
        ("azure-shared-access-key", |r| {
            let v = format!("{}=", r.b64(43));
            format!(
                "ServiceBusConnection: Endpoint=sb://sb-{}.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=«{v}»",
                r.lower(6)
            )
        }),
        ("azure-sas-token", |r| {
            let v = format!("{}%2F{}%2B{}%3D", r.alnum(14), r.alnum(12), r.alnum(13));
            format!(
                "azcopy copy ./dump 'https://st{}.blob.core.windows.net/backups?sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2026-01-01T00:00:00Z&st=2025-01-01T00:00:00Z&spr=https&sig=«{v}»' --recursive",
                r.lower(6)
            )
        }),
        ("azure-ad-client-secret", |r| {
            let v = format!(
                "{}{}Q~{}",
                r.alnum(3),
                r.digits(1),
                r.from(
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_~.-",
                    34
                )
            );
            let v = format!("{}{}", &v[..v.len() - 1], r.alnum(1));
            match r.below(2) {
                0 => format!("ARM_CLIENT_SECRET=«{v}»"),
                _ => format!("  client_secret = \"«{v}»\""),
            }
        }),
        ("github-token", |r| {
            let prefix = *r.pick(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]);
            let v = format!("{prefix}{}", r.alnum(36));
            match r.below(6) {
                0 => format!("export GITHUB_TOKEN=«{v}»"),
                1 => format!("git clone https://x-access-token:«{v}»@github.com/acme/platform.git"),
                2 => format!("curl -sH 'Authorization: token «{v}»' https://api.github.com/user"),
                3 => format!("https://oauth2:«{v}»@github.com"),
                4 => format!("  \"token\": \"«{v}»\","),
                _ => format!("echo «{v}» | gh auth login --with-token"),
            }
        }),
        ("github-fine-grained-pat", |r| {
            let v = format!("github_pat_{}_{}", r.alnum(22), r.alnum(59));
            format!("GH_TOKEN=«{v}» gh release create v1.2.0")
        }),
        ("gitlab-token", |r| {
            let v = match r.below(4) {
                0 | 1 => format!("glpat-{}", r.word(20)),
                2 => format!("glrt-{}", r.word(20)),
                _ => format!("glptt-{}", r.hex(40)),
            };
            match r.below(3) {
                0 => format!(
                    "curl --header \"PRIVATE-TOKEN: «{v}»\" https://gitlab.com/api/v4/projects/42/jobs"
                ),
                1 => format!(
                    "git remote set-url origin https://oauth2:«{v}»@gitlab.internal/platform/infra.git"
                ),
                _ => format!(
                    "[[runners]]\n  name = \"docker-runner\"\n  url = \"https://gitlab.com\"\n  token = \"«{v}»\"\n  executor = \"docker\""
                ),
            }
        }),
        ("slack-token", |r| {
            let v = match r.below(3) {
                0 => format!("xoxb-{}-{}-{}", r.digits(12), r.digits(13), r.alnum(24)),
                1 => format!(
                    "xoxp-{}-{}-{}-{}",
                    r.digits(11),
                    r.digits(12),
                    r.digits(13),
                    r.hex(32)
                ),
                _ => format!(
                    "xapp-1-A{}-{}-{}",
                    r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
                    r.digits(13),
                    r.hex(64)
                ),
            };
            match r.below(3) {
                0 => format!("SLACK_BOT_TOKEN=«{v}»"),
                1 => format!("slack:\n  token: \"«{v}»\"\n  channel: \"#deploys\""),
                _ => format!(
                    "curl -s -X POST -H 'Authorization: Bearer «{v}»' -d channel=C123 https://slack.com/api/chat.postMessage"
                ),
            }
        }),
        ("slack-webhook-url", |r| {
            let v = format!(
                "T{}/B{}/{}",
                r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8),
                r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
                r.alnum(24)
            );
            format!(
                "curl -X POST -H 'Content-type: application/json' --data '{{\"text\":\"deploy done\"}}' https://hooks.slack.com/services/«{v}»"
            )
        }),
        ("stripe-key", |r| {
            let v = match r.below(3) {
                0 => format!("sk_live_{}", r.alnum_in(24, 99)),
                1 => format!("rk_live_{}", r.alnum_in(24, 99)),
                _ => format!("whsec_{}", r.alnum(32)),
            };
            match r.below(3) {
                0 => format!("STRIPE_SECRET_KEY=«{v}»"),
                1 => format!("curl https://api.stripe.com/v1/charges -u «{v}»: -d amount=2000"),
                _ => format!("stripe:\n  secret: «{v}»"),
            }
        }),
        ("twilio", |r| match r.below(2) {
            0 => format!("TWILIO_API_KEY=«SK{}»", r.hex(32)),
            _ => format!(
                "TWILIO_ACCOUNT_SID=AC{}\nTWILIO_AUTH_TOKEN=«{}»",
                r.hex(32),
                r.hex(32)
            ),
        }),
        ("sendgrid-api-key", |r| {
            let v = format!("SG.{}.{}", r.word(22), r.word(43));
            match r.below(2) {
                0 => format!("SENDGRID_API_KEY=«{v}»"),
                _ => format!(
                    "curl --request POST --url https://api.sendgrid.com/v3/mail/send --header 'Authorization: Bearer «{v}»'"
                ),
            }
        }),
        ("openai-api-key", |r| {
            let v = match r.below(3) {
                0 => format!("sk-proj-{}T3BlbkFJ{}", r.word(74), r.word(74)),
                1 => format!("sk-{}T3BlbkFJ{}", r.alnum(20), r.alnum(20)),
                _ => format!("sk-svcacct-{}T3BlbkFJ{}", r.word(58), r.word(58)),
            };
            match r.below(3) {
                0 => format!("OPENAI_API_KEY=«{v}»"),
                1 => format!("client = OpenAI(api_key=\"«{v}»\")"),
                _ => format!(
                    "curl https://api.openai.com/v1/models -H \"Authorization: Bearer «{v}»\""
                ),
            }
        }),
        ("anthropic-api-key", |r| {
            let v = format!("sk-ant-api03-{}AA", r.word(93));
            match r.below(2) {
                0 => format!("export ANTHROPIC_API_KEY=«{v}»"),
                _ => format!(
                    "curl https://api.anthropic.com/v1/messages -H \"x-api-key: «{v}»\" -H \"anthropic-version: 2023-06-01\""
                ),
            }
        }),
        ("huggingface-token", |r| {
            let v = format!(
                "hf_{}",
                r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 34)
            );
            match r.below(2) {
                0 => format!("HF_TOKEN=«{v}»"),
                _ => format!("$ huggingface-cli login --token «{v}»"),
            }
        }),
        ("npm-token", |r| {
            let v = format!("npm_{}", r.alnum(36));
            match r.below(3) {
                0 => format!(
                    "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=«{v}»"
                ),
                1 => format!("NPM_TOKEN=«{v}»"),
                _ => format!(
                    "@acme:registry=https://npm.pkg.github.com\n//npm.pkg.github.com/:_authToken=«{}»",
                    r.uuid()
                ),
            }
        }),
        ("pypi-upload-token", |r| {
            let n = r.range(120, 180);
            let v = format!("pypi-AgEIcHlwaS5vcmc{}", r.word(n));
            match r.below(2) {
                0 => format!("[pypi]\n  username = __token__\n  password = «{v}»"),
                _ => format!("twine upload -u __token__ -p «{v}» dist/*"),
            }
        }),
        ("docker-config-auth", |r| {
            let user = r
                .pick(&["ci", "deploy", "robot$acme+ci", "AWS"])
                .to_string();
            let pass = r.password(16, 40, "!#%^*-_+=.");
            let v = b64_of(format!("{user}:{pass}").as_bytes());
            format!(
                "{{\n\t\"auths\": {{\n\t\t\"registry.gitlab.com\": {{\n\t\t\t\"auth\": \"«{v}»\"\n\t\t}}\n\t}},\n\t\"credsStore\": \"\"\n}}"
            )
        }),
        ("kubernetes-service-account-token", |r| {
            let v = k8s_token(r);
            match r.below(4) {
                0 => format!("users:\n- name: deployer\n  user:\n    token: «{v}»"),
                1 => format!(
                    "curl -sk -H \"Authorization: Bearer «{v}»\" https://10.96.0.1/api/v1/namespaces"
                ),
                2 => {
                    format!("kubectl --server https://k8s.internal:6443 --token=«{v}» get pods -A")
                }
                _ => format!("$ cat /var/run/secrets/kubernetes.io/serviceaccount/token\n«{v}»"),
            }
        }),
        ("kubeconfig-client-key", |r| {
            let body: String = (0..26).map(|_| format!("{}\n", r.b64(64))).collect();
            let v = b64_of(
                format!("-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n")
                    .as_bytes(),
            );
            format!(
                "users:\n- name: kind-admin\n  user:\n    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n    client-key-data: «{v}»"
            )
        }),
        ("kubeconfig-token", |r| {
            let v = match r.below(2) {
                0 => format!(
                    "kubeconfig-u-{}:{}",
                    r.lower(10),
                    r.from("abcdefghijklmnopqrstuvwxyz0123456789", 54)
                ),
                _ => r.alnum(40),
            };
            format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: rancher\n  user:\n    token: «{v}»\ncontexts: []"
            )
        }),
        ("private-key", |r| {
            let key = pem(r);
            match r.below(4) {
                0 => format!("$ cat ~/.ssh/deploy_key\n{key}\n$ "),
                1 => {
                    let indented = key.replace('\n', "\n    ");
                    format!(
                        "apiVersion: v1\nkind: Secret\nstringData:\n  tls.key: |\n    {indented}\n"
                    )
                }
                2 => format!(
                    "resource \"tls_private_key\" \"x\" {{}}\nlocals {{\n  key = <<EOT\n{key}\nEOT\n}}"
                ),
                _ => format!("{{\"ssh_key\": \"{}\"}}", key.replace('\n', "\\n")),
            }
        }),
        ("jwt", |r| {
            let header = r#"{"alg":"HS256","typ":"JWT"}"#;
            let payload = format!(
                r#"{{"sub":"user-{}","name":"{}","iat":{},"exp":{}}}"#,
                r.digits(5),
                r.lower(6),
                r.digits(10),
                r.digits(10)
            );
            let v = jwt(r, header, &payload, 43);
            match r.below(3) {
                0 => format!("2025-01-07 10:22:31,412 DEBUG auth.middleware token=«{v}» accepted"),
                1 => format!(
                    "{{\"access_token\":\"«{v}»\",\"token_type\":\"Bearer\",\"expires_in\":3600}}"
                ),
                _ => format!("Set-Cookie: session=«{v}»; Path=/; HttpOnly"),
            }
        }),
        ("url-credentials", |r| {
            let user = r.pick(&["deploy", "svc-build", "ci", "admin"]).to_string();
            let v = r.password(12, 24, "-_.~");
            match r.below(4) {
                0 => format!(
                    "git remote add backup https://{user}:«{v}»@git.internal.net/infra/platform.git"
                ),
                1 => format!("export HTTPS_PROXY=http://{user}:«{v}»@proxy.corp.local:3128"),
                2 => format!(
                    "pip install --index-url https://{user}:«{v}»@nexus.corp.local/repository/pypi/simple acme-lib"
                ),
                _ => format!("SMTP_URL=smtp://{user}:«{v}»@smtp.mailgun.org:587"),
            }
        }),
        ("database-connection-string", |r| {
            let v = r.password(12, 24, "-_.~");
            match r.below(6) {
                0 => format!(
                    "DATABASE_URL=postgres://app:«{v}»@db.prod.internal:5432/app?sslmode=require"
                ),
                1 => format!("  url: \"postgresql://billing:«{v}»@10.0.4.12/billing\""),
                2 => format!(
                    "MONGO_URI=mongodb+srv://svc_api:«{v}»@cluster0.x1y2z.mongodb.net/prod?retryWrites=true"
                ),
                3 => format!("REDIS_URL=redis://:«{v}»@redis-master.cache.svc:6379/0"),
                4 => format!("mysql://root:«{v}»@127.0.0.1:3306/shop"),
                _ => format!("CELERY_BROKER_URL=amqp://celery:«{v}»@rabbitmq:5672//"),
            }
        }),
        ("jdbc-and-connection-strings", |r| {
            let v = r.password(12, 24, "!#%^*-_+=.");
            match r.below(4) {
                0 => format!(
                    "spring.datasource.url=jdbc:postgresql://db:5432/app?user=app&password=«{v}»&ssl=true"
                ),
                1 => format!(
                    "jdbc:sqlserver://sql1.corp:1433;databaseName=erp;user=sa;password=«{v}»;encrypt=true"
                ),
                2 => format!(
                    "\"DefaultConnection\": \"Server=tcp:acme.database.windows.net,1433;Initial Catalog=app;User ID=app;Password=«{v}»;Encrypt=True;\""
                ),
                _ => format!(
                    "url = jdbc:oracle:thin:scott/«{}»@db.corp:1521:ORCL",
                    r.alnum(14)
                ),
            }
        }),
        ("password-assignment", |r| {
            let v = r.password(12, 24, "!#%^*-_+=.@");
            match r.below(9) {
                0 => format!("DB_HOST=db.internal\nDB_USER=app\nDB_PASSWORD=«{v}»\nDB_NAME=app"),
                1 => format!(
                    "database:\n  host: db.internal\n  username: app\n  password: \"«{v}»\""
                ),
                2 => format!(
                    "{{\"host\": \"db\", \"user\": \"app\", \"password\": \"«{v}»\", \"port\": 5432}}"
                ),
                3 => format!("[client]\nuser = backup\npassword = «{v}»"),
                4 => format!("spring.datasource.password=«{v}»"),
                5 => format!(
                    "    environment:\n      POSTGRES_PASSWORD: «{v}»\n      POSTGRES_DB: app"
                ),
                6 => format!("export MYSQL_PWD='«{v}»'"),
                7 => format!(
                    "<settings><server><id>nexus</id><username>ci</username><password>«{v}»</password></server></settings>"
                ),
                _ => format!("machine nexus.corp.local login ci password «{v}»"),
            }
        }),
        ("secret-assignment", |r| {
            let v = match r.below(3) {
                0 => r.alnum_in(24, 48),
                1 => r.hex(64),
                _ => r.b64(44),
            };
            match r.below(6) {
                0 => format!("API_KEY=«{v}»"),
                1 => format!("  client_secret: «{v}»"),
                2 => format!("{{\"name\": \"billing\", \"api_token\": \"«{v}»\"}}"),
                3 => format!("SECRET_KEY = '«{v}»'"),
                4 => format!("export AUTH_TOKEN=\"«{v}»\""),
                _ => format!("webhook_secret = \"«{v}»\""),
            }
        }),
        ("authorization-header", |r| match r.below(3) {
            0 => format!(
                "curl -H \"Authorization: Bearer «{}»\" https://api.internal/v2/jobs",
                r.alnum(40)
            ),
            1 => {
                let v = b64_of(format!("admin:{}", r.password(12, 20, "-_.")).as_bytes());
                format!(
                    "> GET /api/v1/health HTTP/1.1\n> Authorization: Basic «{v}»\n> Accept: */*"
                )
            }
            _ => format!(
                "wget --header=\"Authorization: Token «{}»\" https://netbox.corp/api/dcim/",
                r.hex(40)
            ),
        }),
        ("curl-user-password", |r| {
            let v = r.password(12, 20, "!#%^*-_+=.");
            match r.below(2) {
                0 => format!(
                    "curl -sS -u deploy:«{v}» https://nexus.corp.local/service/rest/v1/components"
                ),
                _ => format!("curl --user 'elastic:«{v}»' https://es01:9200/_cluster/health"),
            }
        }),
        ("cli-password-flag", |r| {
            let v = r.password(12, 20, "!#%^*-_+=.");
            match r.below(5) {
                0 => format!("$ psql -h db.prod --username app --password «{v}» -c 'select 1'"),
                1 => format!("mysql -h 10.0.0.12 -u root -p«{v}» shop < dump.sql"),
                2 => format!("sshpass -p '«{v}»' ssh -o StrictHostKeyChecking=no admin@10.0.0.5"),
                3 => format!("docker login -u ci -p «{v}» registry.corp.local"),
                _ => format!("vault login -method=userpass username=ops --password=«{v}»"),
            }
        }),
        ("vendor-token", |r| {
            let v = match r.below(26) {
                0 => format!("dop_v1_{}", r.hex(64)),
                1 => format!("hvs.CAESI{}", r.word_in(90, 110)),
                2 => format!("{}.atlasv1.{}", r.alnum(14), r.word(67)),
                3 => format!("dapi{}", r.hex(32)),
                4 => format!("shpat_{}", r.hex(32)),
                5 => format!("lin_api_{}", r.alnum(40)),
                6 => format!("ntn_{}{}", r.digits(11), r.alnum(35)),
                7 => format!("dp.st.{}", r.alnum(43)),
                8 => format!("pul-{}", r.hex(40)),
                9 => format!("sntryu_{}", r.hex(64)),
                10 => format!("glsa_{}_{}", r.alnum(32), r.hex(8)),
                11 => format!(
                    "NRAK-{}",
                    r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 27)
                ),
                12 => format!("PMAK-{}-{}", r.hex(24), r.hex(34)),
                13 => format!("ATATT3xFfGF0{}", r.word(180)),
                14 => format!("HRKU-AA{}", r.word(58)),
                15 => format!("tskey-auth-{}-{}", r.alnum(12), r.alnum(30)),
                16 => format!(
                    "AGE-SECRET-KEY-1{}",
                    r.from("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)
                ),
                17 => format!("gsk_{}", r.alnum(52)),
                18 => format!("dckr_pat_{}", r.word(27)),
                19 => format!("rubygems_{}", r.hex(48)),
                20 => format!("key-{}", r.hex(32)),
                21 => format!("{}-us{}", r.hex(32), r.range(1, 21)),
                22 => format!("{}:AA{}", r.digits(10), r.word(33)),
                23 => format!("xkeysib-{}-{}", r.hex(64), r.alnum(16)),
                24 => format!("r8_{}", r.alnum(37)),
                _ => format!("pplx-{}", r.alnum(48)),
            };
            match r.below(3) {
                0 => format!("TOKEN=«{v}»"),
                1 => format!("  api_credential: \"«{v}»\""),
                _ => format!(
                    "2025-03-02T08:00:00Z WARN client: request with credential «{v}» failed: 401"
                ),
            }
        }),
        ("webhook-url", |r| match r.below(2) {
            0 => format!(
                "DISCORD_WEBHOOK=https://discord.com/api/webhooks/{}/«{}»",
                r.digits(18),
                r.word(68)
            ),
            _ => {
                let u = |r: &mut Rng| {
                    format!(
                        "{}-{}-{}-{}-{}",
                        r.hex(8),
                        r.hex(4),
                        r.hex(4),
                        r.hex(4),
                        r.hex(12)
                    )
                };
                let (a, b, c, d) = (u(r), u(r), r.hex(32), u(r));
                format!(
                    "TEAMS_WEBHOOK=https://acme.webhook.office.com/«webhookb2/{a}@{b}/IncomingWebhook/{c}/{d}»"
                )
            }
        }),
        // Surroundings written after the rules, without tuning the rules to them: what a
        // maintainer should expect from text nobody planned for.
        ("unplanned-contexts", |r| {
            let v = r.password(14, 22, "-_.");
            match r.below(10) {
                0 => format!(
                    "db = sql.Open(\"postgres\", \"host=db port=5432 user=app password=«{v}» dbname=app sslmode=disable\")"
                ),
                1 => format!("db.internal:5432:app:app:«{v}»"),
                2 => format!("redis-cli -h cache.internal -a «{v}» PING"),
                3 => format!(
                    "az login --service-principal -u {} -p «{v}» --tenant corp.onmicrosoft.com",
                    r.uuid()
                ),
                4 => format!("props.setProperty(\"password\", \"«{v}»\");"),
                5 => format!("ENV ADMIN_PASSWORD=«{v}»"),
                6 => format!(
                    "openssl pkcs12 -export -in cert.pem -inkey key.pem -passout pass:«{v}» -out bundle.p12"
                ),
                7 => format!("requests.get(url, auth=(\"svc\", \"«{v}»\"))"),
                8 => format!(
                    "kubectl create secret generic db --from-literal=username=app --from-literal=password=«{v}»"
                ),
                _ => format!(
                    "helm upgrade --install pg bitnami/postgresql --set auth.postgresPassword=«{v}»"
                ),
            }
        }),
        ("datadog-cloudflare", |r| match r.below(2) {
            0 => format!("DD_API_KEY=«{}»", r.hex(32)),
            _ => format!("CLOUDFLARE_API_TOKEN=«{}»", r.word(40)),
        }),
    ]
}

/// Lines of ordinary operational noise (no secrets, some keywords) between the cases.
fn noise(r: &mut Rng) -> String {
    match r.below(8) {
        0 => format!(
            "May {:02} 12:{:02}:{:02} node-{} kubelet[{}]: I0503 12:00:00.{} {} reconciler.go:{}] \"operationExecutor.VerifyControllerAttachedVolume started\" pod=\"default/web-{}\"",
            r.range(1, 28),
            r.below(60),
            r.below(60),
            r.below(9),
            r.digits(4),
            r.digits(6),
            r.digits(4),
            r.digits(3),
            r.hex(6)
        ),
        1 => format!(
            "10.0.{}.{} - - [03/May/2025:12:00:{:02} +0000] \"GET /api/v1/items/{}?page=2 HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
            r.below(255),
            r.below(255),
            r.below(60),
            r.digits(5),
            r.digits(4)
        ),
        2 => format!(
            "web-7d9f{}-{}   1/1     Running   0          {}d{}h",
            r.hex(4),
            r.lower(5),
            r.below(9),
            r.below(24)
        ),
        3 => format!(
            "{{\"level\":\"info\",\"ts\":\"2025-05-03T12:00:{:02}Z\",\"msg\":\"token refreshed\",\"user\":\"svc-{}\",\"expires_in\":3600}}",
            r.below(60),
            r.lower(4)
        ),
        4 => "auth: password policy requires 12 characters; secret rotation scheduled".to_string(),
        5 => format!(
            "#{} [build {}/7] RUN cargo build --release --locked",
            r.range(5, 20),
            r.range(1, 7)
        ),
        6 => format!(
            "Mar 02 08:00:{:02} host sshd[{}]: Accepted publickey for ops from 10.1.{}.{} port {} ssh2: ED25519 SHA256:{}",
            r.below(60),
            r.digits(5),
            r.below(255),
            r.below(255),
            r.digits(5),
            r.b64(43)
        ),
        _ => format!(
            "commit {}\nAuthor: Dev <dev@corp.local>\n\n    fix: rotate api key handling in client",
            r.hex(40)
        ),
    }
}

/// One document with every case, noise between them; each case's secret range shifted.
fn corpus() -> (String, Vec<Case>) {
    let mut r = Rng(0x5eed_cafe_f00d_1234);
    let mut text = String::new();
    let mut cases = Vec::new();
    let gens = generators();
    for round in 0..9 {
        for (kind, generate) in &gens {
            // Rare kinds get fewer rounds, common ones (tokens by vendor) more variety.
            if round >= 7
                && !matches!(
                    *kind,
                    "vendor-token" | "password-assignment" | "private-key" | "unplanned-contexts"
                )
            {
                continue;
            }
            for _ in 0..r.below(3) {
                text.push_str(&noise(&mut r));
                text.push('\n');
            }
            let c = case(kind, generate(&mut r));
            let offset = text.len();
            text.push_str(&c.text);
            text.push('\n');
            cases.push(Case {
                secret: c.secret.start + offset..c.secret.end + offset,
                ..c
            });
        }
    }
    // The vendor tokens cycle through 26 vendors, the unplanned contexts through 10: give
    // each of them a few cases.
    for i in 0..61 {
        let kind = if i < 40 {
            "vendor-token"
        } else {
            "unplanned-contexts"
        };
        let c = case(kind, gens.iter().find(|g| g.0 == kind).unwrap().1(&mut r));
        let offset = text.len();
        text.push_str(&c.text);
        text.push('\n');
        cases.push(Case {
            secret: c.secret.start + offset..c.secret.end + offset,
            ..c
        });
    }
    (text, cases)
}

/// A detection covers a planted value when it contains it, and what it adds on either
/// side stays on the value's lines.
fn covers(text: &str, d: &Detection, secret: &Range<usize>) -> bool {
    d.start <= secret.start
        && d.end >= secret.end
        && !text[d.start..secret.start].contains('\n')
        && !text[secret.end..d.end].contains('\n')
}

#[test]
fn recall_on_generated_corpus() {
    let (text, cases) = corpus();
    let found = detector().detect(&text);
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    let mut rules_hit: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &cases {
        let hit = found.iter().find(|d| covers(&text, d, &c.secret));
        let e = by_kind.entry(c.kind).or_default();
        e.1 += 1;
        match hit {
            Some(d) => {
                e.0 += 1;
                *rules_hit.entry(d.rule_id).or_default() += 1;
            }
            None => missed.push(c),
        }
    }
    // Detections that cover no planted value: noise lines and surroundings that fired.
    let stray: Vec<&Detection> = found
        .iter()
        .filter(|d| {
            !cases
                .iter()
                .any(|c| d.start < c.secret.end && c.secret.start < d.end)
        })
        .collect();

    let recalled = cases.len() - missed.len();
    let recall = recalled as f64 / cases.len() as f64;
    println!(
        "recall corpus: {} cases in {} kinds, {:.1} KiB of text",
        cases.len(),
        by_kind.len(),
        text.len() as f64 / 1024.0
    );
    for (kind, (hit, all)) in &by_kind {
        println!("  {kind:<34} {hit:>3}/{all:<3}");
    }
    println!("rules that found them: {rules_hit:?}");
    for c in &missed {
        let line_start = text[..c.secret.start].rfind('\n').map_or(0, |i| i + 1);
        // The value is synthetic; print only its shape, as a real report would.
        println!(
            "  missed {}: value of {} bytes after `{}`",
            c.kind,
            c.secret.len(),
            &text[line_start..c.secret.start]
                .chars()
                .rev()
                .take(60)
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>()
        );
    }
    println!(
        "stray detections outside planted values: {} ({:?})",
        stray.len(),
        stray.iter().map(|d| d.rule_id).collect::<Vec<_>>()
    );
    println!(
        "RECALL: {recalled}/{} = {:.1}%",
        cases.len(),
        recall * 100.0
    );
    assert!(cases.len() >= 300, "the corpus needs at least 300 secrets");
    assert!(
        by_kind.len() >= 40,
        "the corpus needs at least 40 kinds, has {}",
        by_kind.len()
    );
    assert!(recall >= 0.95, "recall {:.1}% is under 95%", recall * 100.0);
    assert_eq!(stray.len(), 0, "noise lines must not be detected");
}

// --- false positives on real text ---------------------------------------------------------

const FP_BUDGET_MIB: usize = 8;
const FP_MINIMUM: usize = 5 << 20;
const PER_FILE: usize = 256 << 10;

/// The budget in MiB: 8, or `STAKPAK_DETECT_FP_MIB` to measure on more (held-out) text; the
/// first 8 MiB are what the rules were tuned on.
fn fp_budget() -> usize {
    std::env::var("STAKPAK_DETECT_FP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FP_BUDGET_MIB)
}

/// Files under `root` (recursively) in sorted order, those `keep` accepts.
fn files_sorted(root: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The text of a file (gunzipped when it ends in .gz), if it is UTF-8; cut to whole lines
/// within `PER_FILE`.
fn read_text(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .take(PER_FILE as u64)
            .read_to_end(&mut bytes)
            .ok()?;
    } else {
        file.take(PER_FILE as u64).read_to_end(&mut bytes).ok()?;
    }
    let mut text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            // A cut may split the last character; anything else is not text.
            let valid = e.utf8_error().valid_up_to();
            if e.as_bytes().len() - valid > 3 {
                return None;
            }
            String::from_utf8(e.into_bytes()[..valid].to_vec()).ok()?
        }
    };
    if text.contains('\0') {
        return None;
    }
    if text.len() + 4 > PER_FILE {
        let cut = text.rfind('\n').map_or(0, |i| i + 1);
        text.truncate(cut);
    }
    text.shrink_to_fit();
    Some(text)
}

struct Source {
    name: &'static str,
    files: Vec<PathBuf>,
    budget: usize,
    /// At most this much from the files of one group (package, crate), so one big package
    /// does not stand for a whole source.
    per_group: usize,
    group: fn(&Path) -> String,
}

fn cargo_registry() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("registry/src")
}

fn nth_component(path: &Path, root: &Path, n: usize) -> String {
    path.strip_prefix(root)
        .ok()
        .and_then(|p| p.components().nth(n))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One file's text for the false-positive measurement.
struct RealText {
    source: &'static str,
    path: PathBuf,
    text: String,
}

/// Real text of this machine, `mib` MiB at most, in a fixed order: sorted paths, a budget
/// per source and per package or crate, files cut after whole lines.
fn real_text(mib: usize) -> Vec<RealText> {
    let doc = Path::new("/usr/share/doc");
    let man = Path::new("/usr/share/man");
    let registry = cargo_registry();
    let text_like = |p: &Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let skip = [
            ".png", ".jpg", ".gif", ".svg", ".pdf", ".ico", ".woff", ".ttf", ".zip", ".deb",
        ];
        !skip.iter().any(|s| name.ends_with(s))
    };
    let sources = [
        Source {
            name: "/usr/share/doc",
            files: files_sorted(doc, &text_like),
            budget: 3 << 20,
            per_group: 24 << 10,
            group: |p| nth_component(p, Path::new("/usr/share/doc"), 0),
        },
        Source {
            name: "/usr/share/man",
            files: files_sorted(man, &|p: &Path| {
                p.extension().is_some_and(|e| e == "gz")
                    && p.parent().is_some_and(|d| {
                        d.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("man"))
                    })
            }),
            budget: 2 << 20,
            per_group: 48 << 10,
            group: |p| p.to_string_lossy().into_owned(),
        },
        Source {
            name: "~/.cargo/registry/src (*.rs)",
            files: files_sorted(&registry, &|p: &Path| {
                p.extension().is_some_and(|e| e == "rs")
            }),
            budget: 3 << 20,
            per_group: 16 << 10,
            group: |p| nth_component(p, &cargo_registry(), 1),
        },
    ];
    let budget_total = mib << 20;
    let mut total = 0usize;
    let mut out = Vec::new();
    for source in &sources {
        let (budget, per_group) = (
            source.budget / FP_BUDGET_MIB * mib,
            source.per_group / FP_BUDGET_MIB * mib,
        );
        let mut used = 0usize;
        let mut group_used: BTreeMap<String, usize> = BTreeMap::new();
        for path in &source.files {
            if used >= budget || total >= budget_total {
                break;
            }
            let g = group_used.entry((source.group)(path)).or_default();
            if *g >= per_group {
                continue;
            }
            let Some(mut text) = read_text(path) else {
                continue;
            };
            let room = (budget - used)
                .min(per_group - *g)
                .min(budget_total - total);
            if text.len() > room {
                // Cut after a whole line: a line cut short ends a value where none ends.
                let mut cut = room;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let cut = text[..cut].rfind('\n').map_or(0, |i| i + 1);
                text.truncate(cut);
            }
            if text.is_empty() {
                continue;
            }
            used += text.len();
            *g += text.len();
            total += text.len();
            out.push(RealText {
                source: source.name,
                path: path.clone(),
                text,
            });
        }
    }
    out
}

#[test]
fn false_positives_on_real_text() {
    let texts = real_text(fp_budget());
    let detector = detector();
    let mut per_rule: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_source: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut report = String::new();
    for t in &texts {
        let s = per_source.entry(t.source).or_default();
        s.0 += t.text.len();
        for d in detector.detect(&t.text) {
            s.1 += 1;
            *per_rule.entry(d.rule_id).or_default() += 1;
            let line = t.text[..d.start].matches('\n').count() + 1;
            // Where and which rule, not the value (house rule, even for public files).
            let _ = writeln!(
                report,
                "  {}:{line} {} ({} bytes)",
                t.path.display(),
                d.rule_id,
                d.end - d.start
            );
        }
    }
    for (source, (bytes, found)) in &per_source {
        println!(
            "fp source {source:<30} {:>6.2} MiB, {found} detections",
            *bytes as f64 / (1 << 20) as f64
        );
    }
    let total: usize = texts.iter().map(|t| t.text.len()).sum();
    let mib = total as f64 / (1 << 20) as f64;
    let detections: usize = per_rule.values().sum();
    let per_mib = detections as f64 / mib;
    let mut top: Vec<(&str, usize)> = per_rule.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    print!("{report}");
    println!("fp files read: {}", texts.len());
    println!("top rules: {top:?}");
    println!("FALSE POSITIVES: {detections} in {mib:.2} MiB = {per_mib:.3} per MiB");
    assert!(
        total >= FP_MINIMUM,
        "only {mib:.2} MiB of real text found under /usr/share/doc, /usr/share/man and {}; the false-positive test needs 5 MiB and did not run",
        cargo_registry().display()
    );
    assert!(
        per_mib < 1.0,
        "{per_mib:.3} false positives per MiB (limit 1)"
    );
}

// --- tables -------------------------------------------------------------------------------

/// Every rule's own examples, through the public API (the load checks them too).
#[test]
fn every_rule_has_passing_examples() {
    let d = private();
    let mut examples = 0;
    for rule in d.rules() {
        assert!(
            !rule.examples().is_empty() && !rule.not_examples().is_empty(),
            "{}",
            rule.id()
        );
        for e in rule.examples() {
            let c = case("example", e.clone());
            let got: Vec<Range<usize>> = d
                .detect_with_rule(rule.id(), &c.text)
                .iter()
                .map(Detection::range)
                .collect();
            assert!(
                got.contains(&c.secret),
                "{}: example not detected where marked",
                rule.id()
            );
            examples += 1;
        }
        for e in rule.not_examples() {
            assert_eq!(
                d.detect_with_rule(rule.id(), e),
                Vec::new(),
                "{}",
                rule.id()
            );
            examples += 1;
        }
    }
    assert_eq!(
        d.max_lines(),
        1100,
        "the PEM rule sets how many lines a stream holds back"
    );
    let secret_rules = d.rules().iter().filter(|r| !r.privacy()).count();
    println!(
        "{} rules ({secret_rules} for credentials), {examples} examples checked",
        d.rules().len()
    );
    assert!(secret_rules >= 40);
}

/// Detections of `text` as (rule, value) pairs: whole results, readable in a table.
fn found(d: &Detector, text: &str) -> Vec<(String, String)> {
    d.detect(text)
        .into_iter()
        .map(|x| (x.rule_id.to_string(), text[x.range()].to_string()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn placeholders_are_allowed() {
    let cases = [
        "DB_PASSWORD=${DB_PASSWORD}",
        "password: ${DB_PASSWORD:-postgres}",
        "export API_KEY=$API_KEY",
        "token: {{ .Values.token }}",
        "GITHUB_TOKEN={{secret:GITHUB_TOKEN}}",
        "api_key = \"<your-api-key>\"",
        "API_KEY=your_api_key_here",
        "password = changeme",
        "secret_key: CHANGE_ME_PLEASE_1234",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
        "token: ****************",
        "password: REDACTED",
        "GITHUB_TOKEN=[REDACTED_SECRET:github-pat:a1B2c3]",
        "postgres://app:[REDACTED_SECRET:database-connection-string:Zx81Qa]@db/app",
        "api_token = aaaaaaaaaaaaaaaaaaaaaaaa",
        "DATABASE_URL=postgres://user:password@localhost:5432/app",
        "curl -u \"$USER:$PASS\" https://example.net",
        "Authorization: Bearer $TOKEN",
        "client_secret: %CLIENT_SECRET%",
        "password: $(cat /run/secrets/db)",
    ];
    let d = detector();
    for text in cases {
        assert_eq!(found(&d, text), Vec::new(), "{text}");
    }
}

#[test]
fn privacy_mode_finds_public_addresses_and_accounts() {
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "Accepted publickey for ops from 52.94.236.248 port 51122, relay 10.0.0.8",
            vec![("public-ipv4", "52.94.236.248")],
        ),
        (
            "dns 8.8.8.8, 1.1.1.1 and 192.168.1.1",
            vec![("public-ipv4", "8.8.8.8"), ("public-ipv4", "1.1.1.1")],
        ),
        (
            "lo 127.0.0.1 link 169.254.169.254 cgnat 100.64.3.2 docs 203.0.113.9 mcast 239.1.1.1",
            vec![],
        ),
        ("version 4.19.0.16.2 and OID 1.3.6.1.4.1", vec![]),
        (
            "AAAA 2606:4700:4700::1111; link fe80::1%eth0; ula fd00::1; lo ::1",
            vec![("public-ipv6", "2606:4700:4700::1111")],
        ),
        (
            "2001:db8::42 is documentation, std::io::Result is code",
            vec![],
        ),
        (
            "arn:aws:iam::481516234208:role/deploy",
            vec![("aws-account-id", "481516234208")],
        ),
        (
            "image: 210987654321.dkr.ecr.eu-west-1.amazonaws.com/api:1.4",
            vec![("aws-account-id", "210987654321")],
        ),
        (
            "{\"UserId\": \"AIDAEXAMPLE\", \"Account\": \"345678901234\", \"Arn\": \"arn:aws:iam::345678901234:user/ci\"}",
            vec![
                ("aws-account-id", "345678901234"),
                ("aws-account-id", "345678901234"),
            ],
        ),
        ("arn:aws:s3:::bucket/key", vec![]),
    ];
    let (on, off) = (private(), detector());
    for (text, want) in cases {
        assert_eq!(found(&on, text), pairs(&want), "{text}");
        assert_eq!(found(&off, text), Vec::new(), "privacy off: {text}");
    }
}

#[test]
fn overlapping_findings_merge_and_specific_rules_win() {
    let d = detector();
    let ghp = "ghp_Qm3uT9ZbLw2XrV8nKp4sYd6HfJc1Ae7Gi0Ok";
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        // The generic assignment and the GitHub rule find the same value: GitHub names it.
        (format!("GITHUB_TOKEN={ghp}"), vec![("github-pat", ghp)]),
        // A token in a URL password: one detection, by the token's rule.
        (
            format!("https://x-access-token:{ghp}@github.com/acme/x.git"),
            vec![("github-pat", ghp)],
        ),
        // Two secrets on one line stay two.
        (
            format!("A={ghp} B=AKIAQ2W3E4R5T6Y7U2I3"),
            vec![
                ("github-pat", ghp),
                ("aws-access-key-id", "AKIAQ2W3E4R5T6Y7U2I3"),
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(found(&d, &text), pairs(&want), "{text}");
    }
}

#[test]
fn ranges_are_sorted_disjoint_and_on_char_boundaries() {
    let (text, _) = corpus();
    // Non-ASCII around and inside values must never produce a range that splits a character.
    let text = text
        .replace(" - - ", " – – ")
        .replace("deploy done", "déploiement terminé ✓");
    let mixed = format!(
        "{text}\nmot de passe: password=Üb3r-Sëcrét-Pässwört-42\ntoken=ñ{}\n",
        "é".repeat(20)
    );
    let found = private().detect(&mixed);
    assert!(!found.is_empty());
    for pair in found.windows(2) {
        assert!(
            pair[0].end <= pair[1].start,
            "overlap or disorder at {}",
            pair[1].start
        );
    }
    for d in &found {
        assert!(mixed.is_char_boundary(d.start) && mixed.is_char_boundary(d.end));
        assert!(d.start < d.end);
    }
}

#[test]
fn debug_output_holds_no_value() {
    let text = "GITHUB_TOKEN=ghp_Qm3uT9ZbLw2XrV8nKp4sYd6HfJc1Ae7Gi0Ok";
    let d = detector();
    let found = d.detect(text);
    let shown = format!("{found:?} {d:?} {:?}", d.rules());
    assert!(!shown.contains("Qm3uT9"));
    assert_eq!(
        found,
        vec![Detection {
            start: 13,
            end: text.len(),
            rule_id: "github-pat"
        }]
    );
}

#[test]
fn long_lines_and_multiline_keys() {
    let d = detector();
    // A keyword far from the start of a 1 MiB line still finds its value.
    let filler = "lorem ipsum dolor sit amet ".repeat(40_000);
    let text = format!("{filler}api_key=Zq8Lm3Xv9Tb2Wn5Rk7Yp4Hs6Jd1Fg0Ce {filler}");
    assert_eq!(
        found(&d, &text),
        pairs(&[("generic-secret", "Zq8Lm3Xv9Tb2Wn5Rk7Yp4Hs6Jd1Fg0Ce")])
    );
    // A PEM block is found across its lines, body only.
    let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\nLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw==";
    let text = format!(
        "before\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\nafter\n"
    );
    assert_eq!(found(&d, &text), pairs(&[("private-key", body)]));
}

// --- gitleaks as an oracle ------------------------------------------------------------------

/// gitleaks' default rules (tests/reference/gitleaks, MIT), run the way gitleaks runs them:
/// a rule runs on a text holding one of its keywords (lower-cased), its secret is the
/// `secretGroup` or the first group that took part, then entropy, the rule's allowlists
/// (regexes on the secret, the match or the line; stopwords) and the global one.
struct Gitleaks {
    rules: Vec<GitleaksRule>,
    /// Rules whose regex the Rust engine refuses (none, at the time of writing).
    refused: Vec<String>,
    global: Vec<regex::Regex>,
    stopwords: Vec<String>,
}

struct GitleaksRule {
    id: String,
    regex: regex::Regex,
    keywords: Vec<String>,
    group: usize,
    entropy: f64,
    allow: Vec<(String, regex::Regex)>,
    stopwords: Vec<String>,
}

fn gitleaks() -> Option<Gitleaks> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/gitleaks/gitleaks.toml");
    let file: toml::Table = toml::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let global_table = file.get("allowlist")?;
    let global = strings(global_table.get("regexes"))
        .iter()
        .filter_map(|r| regex::Regex::new(r).ok())
        .collect();
    let stopwords = strings(global_table.get("stopwords"));
    let mut rules = Vec::new();
    let mut refused = Vec::new();
    for r in file.get("rules")?.as_array()? {
        let Some(pattern) = r.get("regex").and_then(|v| v.as_str()) else {
            continue;
        };
        // Unicode \w with counted repetitions outgrows the default size limit.
        let Ok(regex) = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 30)
            .build()
        else {
            refused.push(r.get("id")?.as_str()?.to_string());
            continue;
        };
        let mut allow = Vec::new();
        let mut stop = Vec::new();
        for a in r
            .get("allowlists")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            // Path-only allowlists and path conditions do not apply to text without a path.
            if a.get("paths").is_some() {
                continue;
            }
            let target = a
                .get("regexTarget")
                .and_then(|v| v.as_str())
                .unwrap_or("secret")
                .to_string();
            for re in strings(a.get("regexes")) {
                if let Ok(re) = regex::Regex::new(&re) {
                    allow.push((target.clone(), re));
                }
            }
            stop.extend(strings(a.get("stopwords")));
        }
        rules.push(GitleaksRule {
            id: r.get("id")?.as_str()?.to_string(),
            regex,
            keywords: strings(r.get("keywords")),
            group: r
                .get("secretGroup")
                .and_then(|v| v.as_integer())
                .unwrap_or(0) as usize,
            entropy: r
                .get("entropy")
                .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
                .unwrap_or(0.0),
            allow,
            stopwords: stop,
        });
    }
    Some(Gitleaks {
        rules,
        refused,
        global,
        stopwords,
    })
}

fn shannon(s: &str) -> f64 {
    let mut counts = [0usize; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

impl Gitleaks {
    /// Byte ranges of the secrets gitleaks reports in `text`.
    fn find(&self, text: &str) -> Vec<(Range<usize>, String)> {
        let lower = text.to_ascii_lowercase();
        let mut out = Vec::new();
        for rule in &self.rules {
            if !rule.keywords.is_empty()
                && !rule.keywords.iter().any(|k| lower.contains(k.as_str()))
            {
                continue;
            }
            for caps in rule.regex.captures_iter(text) {
                let whole = caps.get(0).unwrap();
                let secret = if rule.group > 0 {
                    caps.get(rule.group)
                } else {
                    (1..caps.len()).find_map(|g| caps.get(g)).or(Some(whole))
                };
                let Some(secret) = secret else { continue };
                let s = secret.as_str();
                if s.is_empty() || shannon(s) < rule.entropy {
                    continue;
                }
                let line_start = text[..whole.start()].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[whole.end()..]
                    .find('\n')
                    .map_or(text.len(), |i| whole.end() + i);
                let allowed = rule.allow.iter().any(|(target, re)| match target.as_str() {
                    "match" => re.is_match(whole.as_str()),
                    "line" => re.is_match(&text[line_start..line_end]),
                    _ => re.is_match(s),
                }) || self.global.iter().any(|re| re.is_match(s))
                    || rule
                        .stopwords
                        .iter()
                        .chain(&self.stopwords)
                        .any(|w| s.to_ascii_lowercase().contains(w.as_str()));
                if !allowed {
                    out.push((secret.range(), rule.id.clone()));
                }
            }
        }
        out
    }
}

/// The same corpus and the same real text through gitleaks' rules, for comparison. Informative:
/// only the rule file must load.
#[test]
fn gitleaks_rules_on_the_same_corpus_and_text() {
    let gl = gitleaks().expect("tests/reference/gitleaks/gitleaks.toml does not load");
    let (text, cases) = corpus();
    let found = gl.find(&text);
    let mut missed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut hit = 0;
    for c in &cases {
        // gitleaks reports whole PEM blocks: containing the value is enough here.
        let covered = found
            .iter()
            .any(|(r, _)| r.start <= c.secret.start && c.secret.end <= r.end);
        if covered {
            hit += 1;
        } else {
            *missed.entry(c.kind).or_default() += 1;
        }
    }
    println!(
        "GITLEAKS ORACLE recall on the same corpus: {hit}/{} = {:.1}% ({} rules, {} refused by the regex engine: {:?}); missed by kind: {missed:?}",
        cases.len(),
        hit as f64 * 100.0 / cases.len() as f64,
        gl.rules.len(),
        gl.refused.len(),
        gl.refused
    );
    // Our detections that gitleaks does not confirm, and the other way round, on the corpus.
    let ours = detector().detect(&text);
    let unconfirmed = ours
        .iter()
        .filter(|d| {
            !found
                .iter()
                .any(|(r, _)| r.start < d.end && d.start < r.end)
        })
        .count();
    println!(
        "  our {} detections, {unconfirmed} of them found by no gitleaks rule",
        ours.len()
    );

    // The same real text as the false-positive test.
    let texts = real_text(fp_budget());
    let fp_text: usize = texts.iter().map(|t| t.text.len()).sum();
    let mut fp: BTreeMap<String, usize> = BTreeMap::new();
    for t in &texts {
        let mut spans: Vec<(Range<usize>, String)> = gl.find(&t.text);
        spans.sort_by_key(|(r, _)| (r.start, r.end));
        spans.dedup_by(|b, a| b.0.start < a.0.end);
        for (_, id) in spans {
            *fp.entry(id).or_default() += 1;
        }
    }
    let n: usize = fp.values().sum();
    let mib = fp_text as f64 / (1 << 20) as f64;
    println!(
        "  gitleaks on {mib:.2} MiB of real text: {n} detections = {:.2} per MiB; by rule: {fp:?}",
        n as f64 / mib
    );
}
