//! What an HTTP request meets of the extensions: [`pipeline`] runs their middleware and the
//! pipeline hooks around every request, [`dispatch`] serves `/ext/<name>/…` from each
//! extension's route table, [`convert`] turns actix's request and response heads into the
//! SDK's and back.

pub(crate) mod convert;
pub mod dispatch;
pub(crate) mod pipeline;
