CREATE TABLE probe_items (id bigserial PRIMARY KEY, label text NOT NULL);
