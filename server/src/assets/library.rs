//! The asset library's queries and edits: keyset-paginated listing with filters, asset
//! details with versions, tags, and soft deletion.

use app::accounts::{Principal, Role};
use app::assets::{
    AssetCard, AssetDetail, LibraryPage, LibraryQuery, MediaInfo, Sort, VersionView,
    LIBRARY_PAGE_SIZE,
};
use app::backend::{Actor, AssetsBackend};
use app::error::AppError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{QueryBuilder, Row as _};
use uuid::Uuid;

use super::Assets;
use crate::audit::{self, Who};
use crate::db::OrAppError as _;

/// `$1` is the viewer: an unfinished upload is shown to its uploader only.
const CARD_COLUMNS: &str = "a.id, a.name, a.kind, a.state, a.failure, u.email, a.tags, v.size,
     (v.thumbnail_key is not null) as has_thumbnail, a.created_at, a.owner_id,
     (select jsonb_build_object('upload_id', up.id, 'uploader', up.owner_id, 'file_name', pv.original_name,
             'received', up.received, 'length', up.length, 'version', pv.number)
        from asset_versions pv join uploads up on up.version_id = pv.id
       where pv.asset_id = a.id and pv.state = 'uploading' and up.state = 'receiving'
         and up.expires_at > now() and up.owner_id = $1
       order by pv.number desc limit 1) as pending_upload";

/// An asset still uploading is its owner's alone until the upload completes (then it is
/// processed, and everyone sees it): others never see placeholders of bytes not there.
/// Followed by the viewer's id.
const VISIBLE_TO: &str = "a.state <> 'uploading' or a.owner_id =";

fn card(row: &sqlx::postgres::PgRow) -> AssetCard {
    AssetCard {
        id: row.get("id"),
        name: row.get("name"),
        kind: row.get("kind"),
        state: row.get("state"),
        failure: row.get("failure"),
        owner_email: row.get("email"),
        tags: row.get("tags"),
        size: row.get("size"),
        has_thumbnail: row.get::<Option<bool>, _>("has_thumbnail").unwrap_or(false),
        created_at: row.get("created_at"),
        pending_upload: row
            .get::<Option<serde_json::Value>, _>("pending_upload")
            .and_then(|p| serde_json::from_value(p).ok()),
    }
}

/// Cursor text: `<sort key>~<id>`; ids contain no `~`.
fn cursor(sort: Sort, card: &AssetCard) -> String {
    match sort {
        Sort::Name => format!("{}~{}", card.name.to_lowercase(), card.id),
        Sort::Newest | Sort::Oldest => format!("{}~{}", card.created_at.to_rfc3339(), card.id),
    }
}

fn parse_cursor(text: &str) -> Result<(String, Uuid), AppError> {
    let bad = || AppError::invalid("That page link is no longer valid; start from the first page.");
    let (key, id) = text.rsplit_once('~').ok_or_else(bad)?;
    Ok((key.to_owned(), Uuid::parse_str(id).map_err(|_| bad())?))
}

fn can_edit(who: &Principal, owner: Uuid) -> bool {
    who.user_id == owner || who.has(Role::Lead)
}

#[async_trait]
impl AssetsBackend for Assets {
    async fn library(&self, who: &Principal, q: LibraryQuery) -> Result<LibraryPage, AppError> {
        let mut sql = QueryBuilder::new(format!(
            "select {CARD_COLUMNS} from assets a join users u on u.id = a.owner_id
             left join asset_versions v on v.id = a.current_version_id where a.deleted_at is null"
        ));
        // The first argument, `$1` in CARD_COLUMNS.
        sql.push(format!(" and ({VISIBLE_TO} "))
            .push_bind(who.user_id)
            .push(")");
        if let Some(kind) = &q.kind {
            sql.push(" and a.kind = ").push_bind(kind.clone());
        }
        if let Some(owner) = &q.owner {
            sql.push(" and lower(u.email) = lower(")
                .push_bind(owner.clone())
                .push(")");
        }
        if let Some(tag) = &q.tag {
            sql.push(" and ")
                .push_bind(tag.clone())
                .push(" = any(a.tags)");
        }
        if let Some(state) = &q.state {
            sql.push(" and a.state = ").push_bind(state.clone());
        }
        if let Some(search) = &q.search {
            let pattern = format!(
                "%{}%",
                search
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            sql.push(" and a.name ilike ").push_bind(pattern);
        }
        if let Some(after) = &q.after {
            let (key, id) = parse_cursor(after)?;
            match q.sort {
                Sort::Name => {
                    sql.push(" and (lower(a.name), a.id) > (")
                        .push_bind(key)
                        .push(", ")
                        .push_bind(id)
                        .push(")");
                }
                Sort::Newest | Sort::Oldest => {
                    let at: DateTime<Utc> = key.parse().map_err(|_| {
                        AppError::invalid(
                            "That page link is no longer valid; start from the first page.",
                        )
                    })?;
                    let op = if q.sort == Sort::Newest { "<" } else { ">" };
                    sql.push(format!(" and (a.created_at, a.id) {op} ("))
                        .push_bind(at)
                        .push(", ")
                        .push_bind(id)
                        .push(")");
                }
            }
        }
        sql.push(match q.sort {
            Sort::Newest => " order by a.created_at desc, a.id desc",
            Sort::Oldest => " order by a.created_at, a.id",
            Sort::Name => " order by lower(a.name), a.id",
        });
        sql.push(" limit ").push_bind(LIBRARY_PAGE_SIZE + 1);
        let rows = sql.build().fetch_all(&self.pool).await.or_app()?;
        let mut items: Vec<AssetCard> = rows.iter().map(card).collect();
        let next = if items.len() as i64 > LIBRARY_PAGE_SIZE {
            items.truncate(LIBRARY_PAGE_SIZE as usize);
            items.last().map(|c| cursor(q.sort, c))
        } else {
            None
        };
        Ok(LibraryPage { items, next })
    }

    async fn asset(&self, who: &Principal, id: Uuid) -> Result<AssetDetail, AppError> {
        let row = sqlx::query(&format!(
            "select {CARD_COLUMNS}, a.current_version_id from assets a join users u on u.id = a.owner_id
             left join asset_versions v on v.id = a.current_version_id
             where a.id = $2 and a.deleted_at is null and ({VISIBLE_TO} $1)"
        ))
        .bind(who.user_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .or_app()?
        .ok_or_else(|| AppError::NotFound("This asset does not exist or was deleted.".into()))?;
        let owner: Uuid = row.get("owner_id");
        let current_id: Option<Uuid> = row.get("current_version_id");
        let versions: Vec<VersionView> = sqlx::query(
            "select id, number, state, failure, original_name, size, mime, kind, sha256, probe,
                    (thumbnail_key is not null) as has_thumbnail, (proxy_key is not null) as has_proxy, created_at
             from asset_versions where asset_id = $1 and (state <> 'uploading' or created_by = $2)
             order by number desc",
        )
        .bind(id)
        .bind(who.user_id)
        .fetch_all(&self.pool)
        .await
        .or_app()?
        .iter()
        .map(|v| VersionView {
            id: v.get("id"),
            number: v.get("number"),
            state: v.get("state"),
            failure: v.get("failure"),
            original_name: v.get("original_name"),
            size: v.get("size"),
            mime: v.get("mime"),
            kind: v.get("kind"),
            sha256: v.get("sha256"),
            media: v.get::<Option<serde_json::Value>, _>("probe").and_then(|p| serde_json::from_value::<MediaInfo>(p).ok()),
            has_thumbnail: v.get("has_thumbnail"),
            has_proxy: v.get("has_proxy"),
            created_at: v.get("created_at"),
        })
        .collect();
        let current = versions.iter().find(|v| Some(v.id) == current_id).cloned();
        Ok(AssetDetail {
            card: card(&row),
            current,
            versions,
            can_edit: can_edit(who, owner),
        })
    }

    async fn set_tags(&self, actor: &Actor, id: Uuid, tags: Vec<String>) -> Result<(), AppError> {
        let owner = self.editable(actor, id).await?;
        let mut tx = self.pool.begin().await.or_app()?;
        sqlx::query("update assets set tags = $2, updated_at = now() where id = $1")
            .bind(id)
            .bind(&tags)
            .execute(&mut *tx)
            .await
            .or_app()?;
        audit::record(
            &mut *tx,
            &Who::principal(&actor.principal, actor.client_addr),
            "asset.set_tags",
            Some(format!("asset:{id}")),
            json!({ "tags": tags, "owner": owner }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        self.changed(id).await;
        Ok(())
    }

    async fn delete(&self, actor: &Actor, id: Uuid) -> Result<(), AppError> {
        self.editable(actor, id).await?;
        let mut tx = self.pool.begin().await.or_app()?;
        let name: String = sqlx::query_scalar(
            "update assets set deleted_at = now(), updated_at = now() where id = $1 returning name",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .or_app()?;
        audit::record(
            &mut *tx,
            &Who::principal(&actor.principal, actor.client_addr),
            "asset.delete",
            Some(format!("asset:{id}")),
            json!({ "name": name }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        self.changed(id).await;
        Ok(())
    }
}

impl Assets {
    /// The owner of an asset the actor may edit; an error otherwise.
    async fn editable(&self, actor: &Actor, id: Uuid) -> Result<Uuid, AppError> {
        let owner: Option<Uuid> = sqlx::query_scalar(&format!(
            "select owner_id from assets a where id = $1 and deleted_at is null and ({VISIBLE_TO} $2)"
        ))
        .bind(id)
        .bind(actor.principal.user_id)
        .fetch_optional(&self.pool)
                .await
                .or_app()?;
        let owner = owner.ok_or_else(|| {
            AppError::NotFound("This asset does not exist or was deleted.".into())
        })?;
        if can_edit(&actor.principal, owner) {
            Ok(owner)
        } else {
            Err(AppError::Forbidden(
                "Only its owner, a lead or an admin can change this asset.".into(),
            ))
        }
    }

    /// Tells live views (on every replica) that an asset changed.
    pub async fn changed(&self, id: Uuid) {
        if let Err(err) = sqlx::query("select pg_notify('asset_changes', $1)")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %err, "announcing an asset change failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_even_with_tildes_in_names() {
        let id = Uuid::now_v7();
        let (key, back) = parse_cursor(&format!("my~shot~{id}")).unwrap();
        assert_eq!((key.as_str(), back), ("my~shot", id));
        assert!(parse_cursor("garbage").is_err());
    }
}
