ALTER TABLE "tasks" ADD COLUMN "completed_at" timestamp with time zone;
--> statement-breakpoint
UPDATE "tasks" SET "completed_at" = "updated_at" WHERE "status" = 'done' AND "completed_at" IS NULL;
--> statement-breakpoint
ALTER TABLE "tasks" ADD CONSTRAINT "tasks_completed_check" CHECK ("tasks"."status" <> 'done' OR "tasks"."completed_at" IS NOT NULL);
--> statement-breakpoint
ALTER TABLE "tasks" RENAME COLUMN "estimate" TO "estimate_points";
--> statement-breakpoint
ALTER TABLE "tasks" ALTER COLUMN "estimate_points" SET DATA TYPE smallint;
