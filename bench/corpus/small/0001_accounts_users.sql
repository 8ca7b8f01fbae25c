-- The small corpus: five tables, for runs over tens of thousands of tenants, where the
-- catalogs (not the DDL of one tenant) decide the cost. Numbered format.
CREATE TYPE user_role AS ENUM ('owner', 'member', 'viewer');

CREATE TABLE accounts (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email      text NOT NULL UNIQUE,
    role       user_role NOT NULL DEFAULT 'member',
    created_at timestamptz NOT NULL DEFAULT now()
);
