DROP TABLE probe_items;
