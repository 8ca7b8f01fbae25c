ALTER TABLE "invoices" ADD COLUMN "due_on" date;
--> statement-breakpoint
UPDATE "invoices" SET "due_on" = (coalesce("issued_at", "created_at") + interval '30 days')::date WHERE "due_on" IS NULL;
--> statement-breakpoint
ALTER TABLE "invoices" ALTER COLUMN "due_on" SET NOT NULL;
--> statement-breakpoint
CREATE INDEX "invoices_overdue_idx" ON "invoices" USING btree ("due_on") WHERE "invoices"."status" = 'open';
--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "health_score" smallint;
--> statement-breakpoint
ALTER TABLE "customers" ALTER COLUMN "health_score" SET DEFAULT 50;
--> statement-breakpoint
ALTER TABLE "plans" ALTER COLUMN "seats" SET DEFAULT 5;
--> statement-breakpoint
UPDATE "plans" SET "seats" = 5 WHERE "seats" IS NULL AND "code" <> 'enterprise';
