ALTER TABLE "projects" ADD COLUMN "slug" varchar(64);
--> statement-breakpoint
UPDATE "projects" SET "slug" = lower(regexp_replace("name", '[^a-zA-Z0-9]+', '-', 'g')) WHERE "slug" IS NULL;
--> statement-breakpoint
ALTER TABLE "projects" ALTER COLUMN "slug" SET NOT NULL;
--> statement-breakpoint
CREATE UNIQUE INDEX "projects_org_slug_idx" ON "projects" USING btree ("organization_id","slug");
--> statement-breakpoint
ALTER TABLE "projects" ADD COLUMN "visibility" varchar(16);
--> statement-breakpoint
ALTER TABLE "projects" ALTER COLUMN "visibility" SET DEFAULT 'private';
--> statement-breakpoint
UPDATE "projects" SET "visibility" = 'private' WHERE "visibility" IS NULL;
--> statement-breakpoint
ALTER TABLE "projects" ALTER COLUMN "visibility" SET NOT NULL;
