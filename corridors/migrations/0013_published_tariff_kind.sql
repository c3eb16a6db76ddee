-- A fifth kind of figure (corridors.types.DataKind.PUBLISHED_TARIFF): a post's price list as
-- published on its web page and transcribed by hand into corridors/data/postal_tariffs/.
-- Real prices, but neither a survey nor a quote the provider answered: kept apart so that a
-- reader (and the postal benchmark) can tell them from observed quotes. On the partitioned
-- quotes table (0010) the parent's check reaches every partition.
ALTER TABLE quotes DROP CONSTRAINT quotes_data_kind_known;
ALTER TABLE quotes ADD CONSTRAINT quotes_data_kind_known
    CHECK (data_kind IN ('survey', 'observed', 'estimate', 'emulated', 'published_tariff'));
