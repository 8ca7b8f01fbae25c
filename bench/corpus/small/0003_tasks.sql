CREATE TABLE tasks (
    id          bigserial PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    assignee_id bigint REFERENCES users (id) ON DELETE SET NULL,
    title       text NOT NULL,
    done        boolean NOT NULL DEFAULT false
);

CREATE INDEX tasks_open_idx ON tasks (project_id) WHERE NOT done;
