ALTER TABLE "tasks" ADD COLUMN "search" tsvector GENERATED ALWAYS AS (to_tsvector('simple', "title")) STORED;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "tasks_search_idx" ON "tasks" USING gin ("search");
