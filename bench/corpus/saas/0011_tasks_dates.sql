ALTER TABLE "tasks" ADD COLUMN "due_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "started_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "tasks" ALTER COLUMN "title" SET DATA TYPE varchar(500);
--> statement-breakpoint
ALTER TABLE "tasks" ALTER COLUMN "estimate" SET DEFAULT 0;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "tasks_due_idx" ON "tasks" USING btree ("due_at") WHERE "tasks"."due_at" IS NOT NULL;
