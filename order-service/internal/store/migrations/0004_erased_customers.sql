-- +goose Up
-- Customers whose user.deleted was applied. Anonymise runs once per
-- erasure; an order whose creation was already under way when it ran
-- (user-service confirmed the customer just before the erasure) would
-- otherwise commit afterwards and keep the erased user's id and address
-- for good. Create refuses a customer listed here.
CREATE TABLE erased_customers (
    user_id   VARCHAR(36) PRIMARY KEY,
    erased_at TIMESTAMP   NOT NULL
);

-- +goose Down
DROP TABLE erased_customers;
