//! Embeds `migrations/` in the crate (see `solobase_sdk::export_extension!`).

fn main() {
    solobase_manifest::migrations::build();
}
