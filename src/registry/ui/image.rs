//! `GET /r/<name>/-/<reference>`: one image or index, with what a user asks
//! of it: how to pull it, what it runs, its layers or platforms, and what
//! refers to it (signatures, SBOMs).

use super::images::{self, Config};
use super::page::{self, Refused, Section};
use super::{Viewer, format, pull_names};
use crate::oci::manifest::Kind;
use crate::oci::{Descriptor, Reference, RepoName};
use crate::registry::state::Shared;
use maud::{Markup, html};
use std::collections::BTreeMap;
use warp::Rejection;
use warp::http::StatusCode;
use warp::reply::Response;

pub async fn page(
    state: Shared,
    viewer: Viewer,
    name: RepoName,
    reference: Reference,
    host: Option<String>,
) -> Result<Response, Rejection> {
    viewer.require_pull(&state, &name)?;
    let store = &state.store;
    let manifest = store
        .get_manifest(&name, &reference)
        .await
        .map_err(Refused::from)?;
    let parsed = images::parse(&manifest).map_err(Refused::from)?;
    let summary = state
        .ui
        .summaries
        .of(store, &name, &manifest)
        .await
        .map_err(Refused::from)?;
    let pushed = match &reference {
        Reference::Tag(tag) => store
            .tag_entries(&name, vec![tag.clone()])
            .await
            .map_err(Refused::from)?
            .first()
            .map(|e| e.pushed),
        Reference::Digest(_) => None,
    };
    let referrers = store
        .referrers(&name, &manifest.digest, None)
        .await
        .map_err(Refused::from)?;
    let config = images::config(store, &name, &parsed).await;
    let digest = &manifest.digest;
    let title = match &reference {
        Reference::Tag(tag) => format!("{name}:{tag}"),
        Reference::Digest(d) => format!("{name}@{}", format::short(d)),
    };

    let mut pulls = Vec::new();
    for host in pull_names(&state, host.as_deref()) {
        if let Reference::Tag(tag) = &reference {
            pulls.push(format!("docker pull {host}/{name}:{tag}"));
        }
        pulls.push(format!("docker pull {host}/{name}@{digest}"));
    }
    let children = match parsed.kind {
        Kind::Index => {
            let mut children = Vec::new();
            for entry in images::entries(&manifest) {
                let size = match images::stored(store, &name, &entry.digest)
                    .await
                    .map_err(Refused::from)?
                {
                    Some(child) => Some(
                        state
                            .ui
                            .summaries
                            .of(store, &name, &child)
                            .await
                            .map_err(Refused::from)?
                            .size(),
                    ),
                    None => None,
                };
                children.push((entry, size));
            }
            children
        }
        Kind::Image => Vec::new(),
    };

    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/" { "Repositories" } " / " a href=(format!("/r/{name}")) { (name) } " /"
        }
        h1 { (title) }
        dl.facts {
            dt { "Digest" } dd { code.wrap { (digest) } }
            dt { "Media type" } dd { code { (manifest.media_type) } }
            @if let Some(kind) = &parsed.artifact_type { dt { "Artifact type" } dd { code { (kind) } } }
            dt { "Size" } dd { (format::size(summary.size())) " " span.hint { "(layers and config, compressed)" } }
            @if let Some(at) = pushed { dt { "Tag pushed" } dd { (format::ago(at)) } }
            @if let Some(subject) = &parsed.subject {
                dt { "Refers to" }
                dd { a href=(format!("/r/{name}/-/{}", subject.digest)) { (format::digest(&subject.digest)) } }
            }
        }

        section aria-labelledby="pull" {
            h2 #pull { "Pull" }
            ul.commands {
                @for command in &pulls {
                    li {
                        code { (command) }
                        button.copy type="button" data-copy=(command) hidden { "Copy" }
                    }
                }
            }
        }

        @if parsed.kind == Kind::Index {
            section aria-labelledby="platforms" {
                h2 #platforms { "Platforms" }
                table.list {
                    thead { tr { th scope="col" { "Platform" } th scope="col" { "Digest" } th scope="col" { "Size" } } }
                    tbody {
                        @for (entry, size) in &children {
                            tr {
                                th scope="row" data-label="Platform" {
                                    @if entry.is_attestation() { "attestation" }
                                    @else if let Some(p) = &entry.platform { (p.to_string()) }
                                    @else { "—" }
                                }
                                td data-label="Digest" {
                                    @if size.is_some() {
                                        a href=(format!("/r/{name}/-/{}", entry.digest)) { (format::digest(&entry.digest)) }
                                    } @else {
                                        (format::digest(&entry.digest)) " " span.hint { "(not stored here)" }
                                    }
                                }
                                td data-label="Size" { @if let Some(size) = size { (format::size(*size)) } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }

        @if let Some(config) = &config { (config_section(config)) }
        @if parsed.kind == Kind::Image { (layers(&parsed.blobs)) }
        @if let Some(annotations) = &parsed.annotations { (table("Annotations", "annotations", annotations)) }

        section aria-labelledby="referrers" {
            h2 #referrers { "Referrers" }
            @if referrers.is_empty() {
                p { "Nothing refers to this manifest (no signature, SBOM or other artifact)." }
            } @else {
                table.list {
                    thead { tr { th scope="col" { "Type" } th scope="col" { "Digest" } th scope="col" { "Size" } th scope="col" { "Created" } } }
                    tbody {
                        @for referrer in &referrers {
                            tr {
                                th scope="row" data-label="Type" { code { (referrer.artifact_type.as_deref().unwrap_or(&referrer.media_type)) } }
                                td data-label="Digest" { a href=(format!("/r/{name}/-/{}", referrer.digest)) { (format::digest(&referrer.digest)) } }
                                td data-label="Size" { (format::size(referrer.size)) }
                                td data-label="Created" { (annotation(referrer, "org.opencontainers.image.created")) }
                            }
                        }
                    }
                }
            }
        }

        @if viewer.may_delete(&state, &name) {
            section.danger aria-labelledby="delete" {
                h2 #delete { "Delete" }
                ul.actions {
                    @if let Reference::Tag(tag) = &reference {
                        li { a.button href=(format!("/r/{name}/-/{tag}/delete")) { "Delete tag " (tag) "…" } }
                    }
                    li { a.button href=(format!("/r/{name}/-/{digest}/delete")) { "Delete manifest " (format::short(digest)) "…" } }
                }
            }
        }
    };
    Ok(page::respond(
        StatusCode::OK,
        page::render(&title, Some(Section::Repositories), Some(&viewer), body),
    ))
}

fn annotation(descriptor: &Descriptor, key: &str) -> String {
    descriptor
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or_else(|| "—".to_owned())
}

/// How the image runs and what it was built for.
fn config_section(config: &Config) -> Markup {
    let run = &config.config;
    let words = |list: &Option<Vec<String>>| list.as_ref().map(|l| l.join(" "));
    let env: BTreeMap<String, String> = run
        .env
        .iter()
        .flatten()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (pair.clone(), String::new()),
        })
        .collect();
    html! {
        section aria-labelledby="config" {
            h2 #config { "Config" }
            dl.facts {
                @if let Some(created) = &config.created { dt { "Created" } dd { (created) } }
                @if let Some(platform) = config.platform() { dt { "Platform" } dd { (platform) } }
                @if let Some(entrypoint) = words(&run.entrypoint) { dt { "Entrypoint" } dd { code.wrap { (entrypoint) } } }
                @if let Some(cmd) = words(&run.cmd) { dt { "Command" } dd { code.wrap { (cmd) } } }
                @if let Some(dir) = run.working_dir.as_ref().filter(|d| !d.is_empty()) { dt { "Working folder" } dd { code { (dir) } } }
                @if let Some(user) = run.user.as_ref().filter(|u| !u.is_empty()) { dt { "User" } dd { code { (user) } } }
                @if let Some(ports) = &run.exposed_ports {
                    dt { "Ports" } dd { (ports.keys().cloned().collect::<Vec<_>>().join(", ")) }
                }
            }
            @if !env.is_empty() { (table("Environment", "env", &env)) }
            @if let Some(labels) = run.labels.as_ref().filter(|l| !l.is_empty()) { (table("Labels", "labels", labels)) }
            @let steps: Vec<&str> = config.history.iter().filter_map(|h| h.created_by.as_deref()).collect();
            @if !steps.is_empty() {
                details {
                    summary { "History (" (steps.len()) " steps)" }
                    ol.history { @for step in steps { li { code.wrap { (step) } } } }
                }
            }
        }
    }
}

/// A table of names and values (environment, labels, annotations).
fn table(caption: &str, id: &str, pairs: &BTreeMap<String, String>) -> Markup {
    html! {
        table.pairs #(id) {
            caption { (caption) }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
            tbody {
                @for (key, value) in pairs {
                    tr { th scope="row" { code { (key) } } td { code.wrap { (value) } } }
                }
            }
        }
    }
}

/// An image's config and layers, in order.
fn layers(blobs: &[Descriptor]) -> Markup {
    let layers = blobs.get(1..).unwrap_or_default();
    html! {
        section aria-labelledby="layers" {
            h2 #layers { "Layers (" (layers.len()) ")" }
            table.list {
                thead { tr { th scope="col" { "#" } th scope="col" { "Digest" } th scope="col" { "Media type" } th scope="col" { "Size" } } }
                tbody {
                    @for (i, layer) in layers.iter().enumerate() {
                        tr {
                            th scope="row" data-label="#" { (i + 1) }
                            td data-label="Digest" { (format::digest(&layer.digest)) }
                            td data-label="Media type" { code { (layer.media_type) } }
                            td data-label="Size" { (format::size(layer.size)) }
                        }
                    }
                }
            }
        }
    }
}
