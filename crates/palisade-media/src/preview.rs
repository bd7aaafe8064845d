//! Link previews (`/preview_url`): the page a user links to, fetched by the server and read
//! for its Open Graph tags. Off unless configured, since it makes the server connect where its
//! users say: only http(s), only public addresses (unless allowed by configuration), checked
//! for every address a name resolves to and again after every redirect, with the page's size
//! and the time bounded.

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Duration};

use html5gum::{Token, Tokenizer};
use palisade_core::{Error, ErrorKind, Result, net::host_reachable};
use palisade_net::guarded_client;
use serde_json::{Map, Value};

/// Most of a page read.
const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// Longest a preview may take to fetch.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed.
const MAX_REDIRECTS: usize = 5;
/// How long a preview is reused.
const CACHE_MS: u64 = 60 * 60 * 1000;
/// Previews remembered at once.
const MAX_CACHED: usize = 1000;
/// Longest value kept of a tag.
const MAX_VALUE_CHARS: usize = 1000;
/// The Open Graph tags a preview keeps (so a page of countless tags stays small).
const KEPT_TAGS: &[&str] =
    &["og:title", "og:description", "og:site_name", "og:type", "og:url", "og:locale"];

/// Fetches and reads pages for previews, and remembers them for an hour.
pub(crate) struct Previewer {
    http: reqwest::Client,
    allowed: Vec<IpAddr>,
    cache: Mutex<HashMap<String, (u64, Preview)>>,
}

/// A preview: Open Graph keys (`og:title`, …) and their values.
type Preview = Map<String, Value>;

fn unreachable(why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::RemoteUnavailable, format!("Could not preview the URL: {why}"))
}

impl Previewer {
    /// A previewer that may also reach `allowed`.
    pub(crate) fn new(allowed: Vec<IpAddr>) -> Result<Self> {
        let http = guarded_client(allowed.clone(), TIMEOUT, "link preview")?;
        Ok(Self { http, allowed, cache: Mutex::new(HashMap::new()) })
    }

    /// The Open Graph tags of the page at `url`.
    pub(crate) async fn preview(&self, url: &str, now: u64) -> Result<Preview> {
        if let Some((at, preview)) = self.cache.lock().expect("preview cache poisoned").get(url)
            && now.saturating_sub(*at) < CACHE_MS
        {
            return Ok(preview.clone());
        }
        let mut target = reqwest::Url::parse(url)
            .map_err(|e| Error::invalid_param(format!("Invalid URL: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            if !matches!(target.scheme(), "http" | "https") {
                return Err(Error::invalid_param("Only http and https URLs are previewed"));
            }
            if !host_reachable(&target, &self.allowed) {
                return Err(Error::forbidden("IP address blocked"));
            }
            let mut response = self.http.get(target.clone()).send().await.map_err(unreachable)?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or_else(|| unreachable("a redirect without a location"))?;
                target = target.join(location).map_err(unreachable)?;
                continue;
            }
            if !response.status().is_success() {
                return Err(unreachable(response.status()));
            }
            let html = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|kind| kind.starts_with("text/html"));
            if !html {
                return Err(unreachable("not a web page"));
            }
            let mut page = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
                let room = MAX_PAGE_BYTES - page.len();
                page.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if page.len() == MAX_PAGE_BYTES {
                    break;
                }
            }
            let preview = open_graph(&String::from_utf8_lossy(&page));
            let mut cache = self.cache.lock().expect("preview cache poisoned");
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(url.to_owned(), (now, preview.clone()));
            return Ok(preview);
        }
        Err(unreachable("too many redirects"))
    }
}

/// The Open Graph tags of a page (`og:*`), with its `<title>` and description as the title
/// and description where it has none. Images are left out: clients load them only as
/// `mxc://` media, which previews do not fetch yet.
fn open_graph(html: &str) -> Preview {
    let mut preview = Map::new();
    let (mut title, mut description, mut in_title) = (String::new(), None, false);
    let text = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes).trim().chars().take(MAX_VALUE_CHARS).collect::<String>()
    };
    for token in Tokenizer::new(html).flatten() {
        match token {
            Token::StartTag(tag) if tag.name.as_slice() == b"meta" => {
                let attribute = |name: &[u8]| tag.attributes.get(name).map(|v| text(&v.value));
                let key = attribute(b"property").or_else(|| attribute(b"name"));
                let (Some(key), Some(content)) = (key, attribute(b"content")) else { continue };
                if KEPT_TAGS.contains(&key.as_str()) {
                    preview.entry(key).or_insert(Value::from(content));
                } else if key == "description" {
                    description.get_or_insert(content);
                }
            }
            Token::StartTag(tag) if tag.name.as_slice() == b"title" => in_title = true,
            Token::EndTag(tag) if tag.name.as_slice() == b"title" => in_title = false,
            Token::String(string) if in_title => title.push_str(&text(&string.value)),
            _ => {}
        }
    }
    if !title.is_empty() {
        preview.entry("og:title").or_insert(Value::from(title));
    }
    if let Some(description) = description {
        preview.entry("og:description").or_insert(Value::from(description));
    }
    preview
}
