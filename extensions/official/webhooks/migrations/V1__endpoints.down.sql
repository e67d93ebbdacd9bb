DROP TABLE deliveries;
DROP TABLE endpoints;
