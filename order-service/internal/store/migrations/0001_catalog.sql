-- +goose Up
-- The catalogue is server-side data: prices in integer minor units.
CREATE TABLE catalog_items (
    sku         VARCHAR(64)  PRIMARY KEY,
    name        VARCHAR(200) NOT NULL,
    price_cents BIGINT       NOT NULL CHECK (price_cents >= 0),
    currency    CHAR(3)      NOT NULL
);

INSERT INTO catalog_items (sku, name, price_cents, currency) VALUES
    ('RMP-HOODIE',   'Rampart hoodie',            5900, 'EUR'),
    ('RMP-MUG',      'Rampart mug',               1450, 'EUR'),
    ('RMP-STICKERS', 'Sticker pack',               399, 'EUR'),
    ('RMP-TSHIRT',   'Rampart t-shirt',           2500, 'EUR'),
    ('RMP-YUBIKEY',  'Hardware security key',     5500, 'EUR');

-- +goose Down
DROP TABLE catalog_items;
