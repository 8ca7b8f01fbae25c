ALTER TABLE "projects" ADD COLUMN "deleted_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "tasks" ADD COLUMN "deleted_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "documents" ADD COLUMN "deleted_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "deleted_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "kb_articles" ADD COLUMN "deleted_at" timestamp with time zone;
--> statement-breakpoint
CREATE INDEX "tasks_live_project_idx" ON "tasks" USING btree ("project_id","status") WHERE "tasks"."deleted_at" IS NULL;
--> statement-breakpoint
CREATE INDEX "documents_live_org_idx" ON "documents" USING btree ("organization_id") WHERE "documents"."deleted_at" IS NULL;
