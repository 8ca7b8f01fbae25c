ALTER TABLE "tasks" ADD COLUMN "estimate_hours" numeric(6, 2);
--> statement-breakpoint
ALTER TABLE "tasks" ADD CONSTRAINT "tasks_estimate_check" CHECK ("estimate_hours" IS NULL OR "estimate_hours" >= 0);
