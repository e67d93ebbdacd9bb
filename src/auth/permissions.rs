//! Named permissions held by user roles (`solobase.role_permissions`): extension routes may
//! require one (`.permission("notes.write")`). Administrators hold every permission
//! implicitly, so only the `user` role has a list.

use deadpool_postgres::Pool;

/// The permissions `role` holds (always empty for `admin`, which holds all implicitly).
pub(crate) async fn held(pool: &Pool, role: &str) -> anyhow::Result<Vec<String>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT permission FROM solobase.role_permissions WHERE role = $1 ORDER BY permission",
            &[&role],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Gives `role` a permission; false when it held it already.
pub(crate) async fn grant(pool: &Pool, role: &str, permission: &str) -> anyhow::Result<bool> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "INSERT INTO solobase.role_permissions (role, permission) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            &[&role, &permission],
        )
        .await?;
    super::cache::notify(&*tx).await?;
    tx.commit().await?;
    super::cache::changed();
    Ok(n == 1)
}

/// Takes a permission from `role`; false when it did not hold it.
pub(crate) async fn revoke(pool: &Pool, role: &str, permission: &str) -> anyhow::Result<bool> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "DELETE FROM solobase.role_permissions WHERE role = $1 AND permission = $2",
            &[&role, &permission],
        )
        .await?;
    super::cache::notify(&*tx).await?;
    tx.commit().await?;
    super::cache::changed();
    Ok(n == 1)
}
