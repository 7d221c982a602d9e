//! The asset library (upload, filter, browse) and the page of one asset (preview,
//! facts, tags, versions, download, delete), the upload tray every page shows, and the
//! note on an asset whose upload was cut off, with the control that continues it.

use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use uuid::Uuid;

use super::upload::{format_eta, format_speed, use_uploads, UploadItem, UploadStatus, Uploads};
use super::*;
use crate::components::{
    encode_query_value, follow_events, EmptyState, ErrorNote, PageHeader, ProgressBar, Time,
};
use crate::shell::Auth;

const KINDS: [(&str, &str); 6] = [
    ("image", "Images"),
    ("video", "Video"),
    ("audio", "Audio"),
    ("scene", "3D scenes"),
    ("model", "Model weights"),
    ("other", "Other"),
];
const STATES: [(&str, &str); 4] = [
    ("uploading", "Uploading"),
    ("processing", "Processing"),
    ("ready", "Ready"),
    ("failed", "Failed"),
];

/// Bumps `refresh` whenever the server announces an asset change (Server-Sent Events).
fn follow_asset_events(refresh: RwSignal<u64>) {
    follow_events("/api/assets/events", "asset", |_| true, refresh);
}

#[component]
pub fn AssetsPage() -> impl IntoView {
    let query = use_query_map();
    let refresh = RwSignal::new(0u64);
    follow_asset_events(refresh);
    let filters = move || {
        let q = query.read();
        (
            q.get("search"),
            q.get("kind"),
            q.get("owner"),
            q.get("tag"),
            q.get("state"),
            q.get("sort"),
            q.get("after"),
        )
    };
    let page = Resource::new(
        move || (filters(), refresh.get()),
        |((search, kind, owner, tag, state, sort, after), _)| {
            list_assets(search, kind, owner, tag, state, sort, after)
        },
    );
    let value = move |name: &'static str| move || query.read().get(name).unwrap_or_default();
    view! {
        <PageHeader title="Assets" subtitle="Footage, plates, stills, sound, scenes and model weights: uploaded once, found again."/>
        <UploadPanel asset=None/>
        <section class="card">
            <Form method="GET" action="" attr:class="form inline-form filters" attr:id="library-filter">
                <div class="field grow">
                    <label for="lib-search">"Name"</label>
                    <input id="lib-search" name="search" type="search" placeholder="part of a name" value=value("search")/>
                </div>
                <div class="field">
                    <label for="lib-kind">"Kind"</label>
                    <select id="lib-kind" name="kind">
                        <option value="">"Any"</option>
                        {KINDS.into_iter().map(|(v, l)| view! { <option value=v selected=move || value("kind")() == v>{l}</option> }).collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="lib-state">"State"</label>
                    <select id="lib-state" name="state">
                        <option value="">"Any"</option>
                        {STATES.into_iter().map(|(v, l)| view! { <option value=v selected=move || value("state")() == v>{l}</option> }).collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="lib-owner">"Owner"</label>
                    <input id="lib-owner" name="owner" type="email" placeholder="email" value=value("owner")/>
                </div>
                <div class="field">
                    <label for="lib-tag">"Tag"</label>
                    <input id="lib-tag" name="tag" placeholder="e.g. hero" value=value("tag")/>
                </div>
                <div class="field">
                    <label for="lib-sort">"Sort"</label>
                    <select id="lib-sort" name="sort">
                        {[("newest", "Newest first"), ("oldest", "Oldest first"), ("name", "Name")].into_iter().map(|(v, l)| view! {
                            <option value=v selected=move || value("sort")() == v>{l}</option>
                        }).collect_view()}
                    </select>
                </div>
                <button type="submit" class="btn">"Apply"</button>
                <A href="/assets" attr:class="btn link">"Clear"</A>
            </Form>
        </section>
        <Transition fallback=|| view! { <p class="loading">"Loading the library…"</p> }>
            {move || page.get().map(|result| match result {
                Err(e) => view! { <ErrorNote error=e/> }.into_any(),
                Ok(page) if page.items.is_empty() => view! {
                    <EmptyState title="No assets here">
                        {if filters() == Default::default() {
                            "Drop files above to upload them: video, images, audio, 3D scenes or model weights."
                        } else {
                            "Nothing matches these filters."
                        }}
                    </EmptyState>
                }.into_any(),
                Ok(page) => {
                    let next = page.next.map(|cursor| {
                        let (search, kind, owner, tag, state, sort, _) = filters();
                        let mut qs: Vec<String> = [("search", search), ("kind", kind), ("owner", owner), ("tag", tag), ("state", state), ("sort", sort)]
                            .into_iter()
                            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode_query_value(&v))))
                            .collect();
                        qs.push(format!("after={}", encode_query_value(&cursor)));
                        format!("/assets?{}", qs.join("&"))
                    });
                    view! {
                        <div class="asset-grid" id="asset-grid">
                            {page.items.into_iter().map(|card| view! { <AssetTile card/> }).collect_view()}
                        </div>
                        {next.map(|href| view! { <p class="pager"><A href=href>"More assets →"</A></p> })}
                    }.into_any()
                }
            })}
        </Transition>
    }
}

#[component]
fn AssetTile(card: AssetCard) -> impl IntoView {
    let href = format!("/assets/{}", card.id);
    let data_name = card.name.clone();
    let id = card.id;
    let pending = card.pending_upload.clone();
    let title = card.name.clone();
    let thumb = card
        .has_thumbnail
        .then(|| format!("/api/assets/{}/thumbnail", card.id));
    let meta = [
        Some(kind_label(&card.kind).to_owned()),
        card.size.map(|s| format_bytes(s as u64)),
        Some(card.owner_email.clone()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    let body = view! {
            <div class="thumb">
                {match thumb {
                    Some(src) => view! { <img src=src alt="" loading="lazy"/> }.into_any(),
                    None => view! { <span class=format!("kind-glyph kind-{}", card.kind)>{kind_label(&card.kind)}</span> }.into_any(),
                }}
                {(card.state != AssetState::Ready).then(|| view! { <span class=format!("state-badge state-{}", card.state)>{state_label(card.state)}</span> })}
            </div>
            <div class="tile-body">
                <div class="tile-name" title=title>{card.name.clone()}</div>
                <div class="tile-meta">{meta}</div>
                {card.failure.map(|f| view! { <div class="tile-failure">{f}</div> })}
                {(!card.tags.is_empty()).then(|| view! {
                    <div class="tags">{card.tags.into_iter().map(|t| view! { <span class="tag">{t}</span> }).collect_view()}</div>
                })}
            </div>
    };
    match pending {
        None => view! { <A href=href attr:class="asset-tile" attr:data-name=data_name>{body}</A> }
            .into_any(),
        // A file picker cannot sit inside a link: the tile holds the link and the control.
        Some(pending) => view! {
            <div class="asset-tile has-resume" data-name=data_name>
                <A href=href attr:class="tile-link">{body}</A>
                <InterruptedUpload asset=id pending/>
            </div>
        }
        .into_any(),
    }
}

pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "image" => "Image",
        "video" => "Video",
        "audio" => "Audio",
        "scene" => "3D scene",
        "model" => "Model",
        _ => "File",
    }
}

fn state_label(state: AssetState) -> &'static str {
    match state {
        AssetState::Uploading => "Uploading",
        AssetState::Processing => "Processing…",
        AssetState::Failed => "Failed",
        AssetState::Ready => "Ready",
    }
}

/// Drag-and-drop and file-picker uploads; they join the app's queue, which the tray
/// shows on every page.
#[component]
pub fn UploadPanel(asset: Option<Uuid>) -> impl IntoView {
    #[cfg(feature = "hydrate")]
    let uploads = use_uploads();
    let hovering = RwSignal::new(false);
    let input_id = format!(
        "upload-input-{}",
        asset.map(|a| a.to_string()).unwrap_or_default()
    );
    view! {
        <section
            class="card dropzone"
            class:hovering=move || hovering.get()
            id="dropzone"
            on:dragover=move |ev| {
                ev.prevent_default();
                hovering.set(true);
            }
            on:dragleave=move |_| hovering.set(false)
            on:drop=move |ev| {
                ev.prevent_default();
                hovering.set(false);
                #[cfg(feature = "hydrate")]
                if let Some(files) = ev.data_transfer().and_then(|d| d.files()) {
                    uploads.add(files, asset);
                }
            }
        >
            <div class="dropzone-prompt">
                <strong>{if asset.is_some() { "Drop a file here to add a new version" } else { "Drop files here to upload" }}</strong>
                <span class="muted">" or "</span>
                <input
                    id=input_id.clone()
                    class="visually-hidden"
                    type="file"
                    multiple=asset.is_none()
                    on:change=move |ev| {
                        #[cfg(feature = "hydrate")]
                        {
                            let input: web_sys::HtmlInputElement = event_target(&ev);
                            if let Some(files) = input.files() {
                                uploads.add(files, asset);
                            }
                            input.set_value("");
                        }
                        #[cfg(not(feature = "hydrate"))]
                        let _ = ev;
                    }
                />
                <label for=input_id class="btn">"Choose files…"</label>
                <p class="hint">"Large files upload in pieces and survive dropped connections. They go on while you use the rest of Slate: the uploads tray follows them on every page. After a reload, choose the same file again to continue where it stopped."</p>
            </div>
        </section>
    }
}

/// The tray's heading: what is going on, in a few words (tracked).
fn tray_summary(uploads: Uploads) -> String {
    let (fraction, unfinished) = uploads.overall();
    let count = |wanted: fn(&UploadStatus) -> bool| {
        uploads
            .items
            .with(|items| items.iter().filter(|i| i.status.with(wanted)).count())
    };
    let moving = count(|s| matches!(s, UploadStatus::Uploading | UploadStatus::Retrying { .. }));
    let failed = count(|s| matches!(s, UploadStatus::Failed(_)));
    let total = uploads.items.with(Vec::len);
    let files = |n: usize| {
        if n == 1 {
            "1 file".to_owned()
        } else {
            format!("{n} files")
        }
    };
    let percent = crate::components::progress_percent(fraction).floor();
    if moving > 0 {
        format!("Uploading {} · {percent:.0} %", files(unfinished))
    } else if unfinished > 0 {
        format!("{} paused · {percent:.0} %", files(unfinished))
    } else if failed > 0 {
        format!("{} not uploaded", files(failed))
    } else {
        format!("{} uploaded", files(total))
    }
}

/// This tab's uploads, drawn by the shell on every page so that they stay in sight
/// (and go on) while people move around: each file's progress, speed and controls.
/// Collapsible (Escape closes it too); absent while there is nothing to show.
#[component]
pub fn UploadTray() -> impl IntoView {
    let uploads = use_uploads();
    let open = RwSignal::new(true);
    let toggle = NodeRef::<leptos::html::Button>::new();
    let summary = move || tray_summary(uploads);
    let overall = Signal::derive(move || uploads.overall().0);
    let unfinished = move || uploads.overall().1 > 0;
    // For screen readers: said when the counts change, not at every percent.
    let announced = Memo::new(move |_| {
        let (_, unfinished) = uploads.overall();
        if unfinished > 0 {
            format!("{unfinished} uploads in progress")
        } else {
            "Uploads finished".to_owned()
        }
    });
    let any_done = move || {
        uploads
            .items
            .with(|items| items.iter().any(|i| i.status.get() == UploadStatus::Done))
    };
    view! {
        <Show when=move || !uploads.items.read().is_empty()>
            <aside class="upload-tray" id="upload-tray" aria-label="Uploads"
                class:collapsed=move || !open.get()
                on:keydown=move |ev| {
                    if ev.key() == "Escape" && open.get_untracked() {
                        open.set(false);
                        #[cfg(feature = "hydrate")]
                        if let Some(button) = toggle.get_untracked() {
                            let _ = button.focus();
                        }
                    }
                }>
                <div class="tray-head">
                    <button type="button" class="tray-toggle" id="upload-tray-toggle" node_ref=toggle
                        aria-expanded=move || open.get().to_string() aria-controls="upload-tray-body"
                        on:click=move |_| open.update(|o| *o = !*o)>
                        <span class="tray-title">{summary}</span>
                        <span class="tray-chevron" aria-hidden="true">{move || if open.get() { "▾" } else { "▴" }}</span>
                        <span class="visually-hidden">{move || if open.get() { " (hide the list)" } else { " (show the list)" }}</span>
                    </button>
                </div>
                // The sum of all, when the rows do not show it already.
                <Show when=move || unfinished() && (!open.get() || uploads.items.with(Vec::len) > 1)>
                    <ProgressBar fraction=overall label="All uploads" class="tray-overall"/>
                </Show>
                <div class="tray-body" id="upload-tray-body" hidden=move || !open.get()>
                    <ul class="upload-queue" id="upload-queue">
                        <For each=move || uploads.items.get() key=|item| item.key let:item>
                            <UploadRow item uploads/>
                        </For>
                    </ul>
                    <Show when=any_done>
                        <button type="button" class="btn small" id="upload-clear" on:click=move |_| uploads.clear_finished()>"Clear finished"</button>
                    </Show>
                </div>
                <p class="visually-hidden" role="status">{announced}</p>
            </aside>
        </Show>
    }
}

#[component]
fn UploadRow(item: UploadItem, uploads: Uploads) -> impl IntoView {
    let key = item.key;
    let status = item.status;
    let detail = {
        let item = item.clone();
        move || match status.get() {
            UploadStatus::Uploading => {
                let mut parts = vec![format!(
                    "{} of {}",
                    format_bytes(item.sent.get() as u64),
                    format_bytes(item.size as u64)
                )];
                if item.speed.get() > 0.0 {
                    parts.push(format_speed(item.speed.get()));
                }
                if let Some(eta) = item.eta() {
                    parts.push(format!("{} left", format_eta(eta)));
                }
                if let Some(from) = item.resumed_from.get() {
                    parts.push(format!("resumed at {}", format_bytes(from as u64)));
                }
                parts.join(" · ")
            }
            UploadStatus::Paused => format!(
                "Paused at {} of {}",
                format_bytes(item.sent.get() as u64),
                format_bytes(item.size as u64)
            ),
            UploadStatus::Retrying { attempt, why } => {
                format!("{why}; trying again (attempt {attempt})…")
            }
            UploadStatus::Done => "Uploaded; processing follows in the library.".to_owned(),
            UploadStatus::Failed(message) => message,
        }
    };
    let fraction = {
        let item = item.clone();
        Signal::derive(move || item.fraction())
    };
    let name = item.name.clone();
    view! {
        <li class="upload-row" data-name=item.name.clone() data-status=move || status.get().as_str()>
            <div class="upload-name" title=item.name.clone()>{item.name.clone()}</div>
            <ProgressBar fraction label=format!("Upload of {}", item.name)/>
            <div class="upload-detail" class:error=move || matches!(status.get(), UploadStatus::Failed(_))>{detail}</div>
            <div class="upload-actions">
                {move || {
                    let name = name.clone();
                    match status.get() {
                        UploadStatus::Uploading | UploadStatus::Retrying { .. } => view! {
                            <button type="button" class="btn small" aria-label=format!("Pause {name}") on:click=move |_| uploads.pause(key)>"Pause"</button>
                        }.into_any(),
                        UploadStatus::Paused | UploadStatus::Failed(_) => view! {
                            <button type="button" class="btn small" aria-label=format!("Resume {name}") on:click=move |_| uploads.resume(key)>"Resume"</button>
                        }.into_any(),
                        UploadStatus::Done => ().into_any(),
                    }
                }}
                {
                    let name = item.name.clone();
                    move || (status.get() != UploadStatus::Done).then(|| view! {
                        <button type="button" class="btn small danger" aria-label=format!("Cancel {name}") on:click=move |_| uploads.cancel(key)>"Cancel"</button>
                    })
                }
            </div>
        </li>
    }
}

/// On an asset whose upload was cut off (a reload, a crash, a closed tab), for the
/// person uploading it when this tab is not: how far it got, and a control to choose the
/// file again, which continues the same upload where the server stopped.
#[component]
fn InterruptedUpload(asset: Uuid, pending: PendingUpload) -> impl IntoView {
    let auth = expect_context::<Auth>();
    let uploads = use_uploads();
    let url = pending.url();
    let uploader = pending.uploader;
    // Even while the server may still be writing a request to it: right after a reload
    // the cut-off request often still is, and that is when the note is needed.
    let shown =
        move || auth.me().get().is_some_and(|me| me.user_id == uploader) && !uploads.holds(&url);
    let error = RwSignal::new(None::<String>);
    let input_id = format!("resume-{}", pending.upload_id);
    let text = match pending.percent() {
        Some(p) => format!("Upload interrupted at {p} % — choose the same file again to resume"),
        None => format!(
            "Upload interrupted after {} — choose the same file again to resume",
            format_bytes(pending.received.max(0) as u64)
        ),
    };
    let choose = format!("Choose {}…", pending.file_name);
    #[cfg(not(feature = "hydrate"))]
    let _ = asset;
    view! {
        <Show when=shown>
            <div class="interrupted" data-upload=pending.upload_id.to_string()>
                <p class="interrupted-text">{text.clone()}</p>
                <input id=input_id.clone() class="visually-hidden" type="file"
                    on:change={
                        let pending = pending.clone();
                        move |ev| {
                            #[cfg(feature = "hydrate")]
                            {
                                let input: web_sys::HtmlInputElement = event_target(&ev);
                                if let Some(file) = input.files().and_then(|f| f.get(0)) {
                                    error.set(uploads.continue_interrupted(file, &pending, asset).err());
                                }
                                input.set_value("");
                            }
                            #[cfg(not(feature = "hydrate"))]
                            let _ = (ev, &pending, error);
                        }
                    }/>
                <label for=input_id.clone() class="btn small">{choose.clone()}</label>
                {move || error.get().map(|e| view! { <p class="interrupted-error" role="alert">{e}</p> })}
            </div>
        </Show>
    }
}

#[component]
pub fn AssetPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("id")
            .and_then(|s| Uuid::parse_str(&s).ok())
    };
    let refresh = RwSignal::new(0u64);
    follow_asset_events(refresh);
    let save_tags = ServerAction::<SetAssetTags>::new();
    let delete = ServerAction::<DeleteAsset>::new();
    let asset = Resource::new(
        move || (id(), refresh.get(), save_tags.version().get()),
        |(id, _, _)| async move {
            match id {
                Some(id) => get_asset(id).await,
                None => Err(crate::error::AppError::NotFound(
                    "There is no asset at this address.".into(),
                )),
            }
        },
    );
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = delete.value().get() {
            navigate("/assets", Default::default());
        }
    });
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || asset.get().map(|result| match result {
                Err(e) => view! { <PageHeader title="Asset"/><ErrorNote error=e/> }.into_any(),
                Ok(detail) => asset_view(detail, save_tags, delete).into_any(),
            })}
        </Transition>
    }
}

fn asset_view(
    detail: AssetDetail,
    save_tags: ServerAction<SetAssetTags>,
    delete: ServerAction<DeleteAsset>,
) -> impl IntoView {
    let AssetDetail {
        card,
        current,
        versions,
        can_edit,
    } = detail;
    let id = card.id;
    let confirming = RwSignal::new(false);
    let preview = match &current {
        Some(v) if v.has_proxy => view! {
            <video class="preview" controls preload="metadata" src=format!("/api/assets/{id}/proxy")
                poster=v.has_thumbnail.then(|| format!("/api/assets/{id}/thumbnail"))></video>
        }.into_any(),
        Some(v) if v.has_thumbnail => view! {
            <a href=format!("/api/assets/{id}/original") class="preview-link">
                <img class="preview" src=format!("/api/assets/{id}/thumbnail") alt=format!("Preview of {}", card.name)/>
            </a>
        }.into_any(),
        _ => view! { <div class="preview none"><span class=format!("kind-glyph kind-{}", card.kind)>{kind_label(&card.kind)}</span></div> }.into_any(),
    };
    view! {
        <PageHeader title=card.name.clone() subtitle=format!("{} · uploaded by {}", kind_label(&card.kind), card.owner_email)/>
        {(card.state != AssetState::Ready).then(|| view! {
            <div class=format!("notice {}", if card.state == AssetState::Failed { "error" } else { "info" }) role="status" id="asset-state">
                <strong>{state_label(card.state)}</strong>
                {card.failure.clone().map(|f| view! { <span>{f}</span> })}
            </div>
        })}
        {card.pending_upload.clone().map(|pending| view! { <InterruptedUpload asset=id pending/> })}
        <div class="asset-layout">
            <section class="card preview-card">{preview}</section>
            <section class="card facts-card">
                <h2>"Details"</h2>
                {current.clone().map(|v| facts(&v))}
                <div class="asset-actions">
                    {current.as_ref().map(|_| view! {
                        <a class="btn primary" href=format!("/api/assets/{id}/original") download>"Download original"</a>
                    })}
                    {can_edit.then(|| view! {
                        <Show when=move || confirming.get() fallback=move || view! {
                            <button type="button" class="btn danger" on:click=move |_| confirming.set(true)>"Delete…"</button>
                        }>
                            <button type="button" class="btn danger" on:click=move |_| { delete.dispatch(DeleteAsset { id }); }>"Delete this asset"</button>
                            <button type="button" class="btn" on:click=move |_| confirming.set(false)>"Keep it"</button>
                        </Show>
                    })}
                </div>
                {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
            </section>
        </div>
        <section class="card">
            <h2>"Tags"</h2>
            {if can_edit {
                view! {
                    <ActionForm action=save_tags attr:class="form inline-form" attr:id="tags-form">
                        <input type="hidden" name="id" value=id.to_string()/>
                        <div class="field grow">
                            <label for="asset-tags">"Tags, separated by commas"</label>
                            <input id="asset-tags" name="tags" value=card.tags.join(", ") placeholder="hero, night, sq010"/>
                        </div>
                        <button type="submit" class="btn">"Save tags"</button>
                    </ActionForm>
                    {move || save_tags.value().get().and_then(Result::err).map(|e| view! { <ErrorNote error=e/> })}
                }.into_any()
            } else if card.tags.is_empty() {
                view! { <p class="muted">"No tags."</p> }.into_any()
            } else {
                view! { <div class="tags">{card.tags.iter().map(|t| view! { <span class="tag">{t.clone()}</span> }).collect_view()}</div> }.into_any()
            }}
        </section>
        <section class="card">
            <h2>"Versions"</h2>
            <table class="table" id="versions-table">
                <thead><tr><th>"#"</th><th>"File"</th><th>"Size"</th><th>"State"</th><th>"Uploaded"</th><th></th></tr></thead>
                <tbody>
                    {versions.into_iter().map(|v| view! {
                        <tr>
                            <td>{v.number}</td>
                            <td>{v.original_name.clone()}</td>
                            <td>{v.size.map(|s| format_bytes(s as u64)).unwrap_or_default()}</td>
                            <td>
                                {state_label(v.state)}
                                {v.failure.clone().map(|f| view! { <div class="muted small">{f}</div> })}
                            </td>
                            <td><Time at=v.created_at/></td>
                            <td class="actions">
                                {(v.sha256.is_some()).then(|| view! {
                                    <a href=format!("/api/assets/{id}/original?version={}", v.id) download>"Download"</a>
                                })}
                            </td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            {can_edit.then(|| view! { <UploadPanel asset=Some(id)/> })}
        </section>
    }
}

fn facts(v: &VersionView) -> impl IntoView {
    let mut rows: Vec<(&'static str, String)> = vec![("File", v.original_name.clone())];
    if let Some(size) = v.size {
        rows.push(("Size", format_bytes(size as u64)));
    }
    if let Some(mime) = &v.mime {
        rows.push(("Type", mime.clone()));
    }
    if let Some(m) = &v.media {
        if let (Some(w), Some(h)) = (m.width, m.height) {
            rows.push(("Resolution", format!("{w} × {h}")));
        }
        if let Some(d) = m.duration_seconds {
            rows.push(("Duration", format_duration(d)));
        }
        if let Some(fps) = m.frame_rate {
            rows.push(("Frame rate", format!("{fps} fps")));
        }
        let codecs: Vec<String> = [m.video_codec.clone(), m.audio_codec.clone()]
            .into_iter()
            .flatten()
            .collect();
        if !codecs.is_empty() {
            rows.push(("Codecs", codecs.join(", ")));
        }
        if let Some(b) = m.bit_rate {
            rows.push(("Bit rate", format!("{:.1} Mbit/s", b as f64 / 1_000_000.0)));
        }
        if let Some(c) = m.audio_channels {
            rows.push(("Audio channels", c.to_string()));
        }
    }
    if let Some(sha) = &v.sha256 {
        rows.push(("SHA-256", sha.clone()));
    }
    rows.push(("Version", v.number.to_string()));
    view! {
        <dl class="facts" id="asset-facts">
            {rows.into_iter().map(|(k, val)| view! { <dt>{k}</dt><dd>{val}</dd> }).collect_view()}
        </dl>
    }
}
