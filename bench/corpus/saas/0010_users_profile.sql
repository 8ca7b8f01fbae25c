ALTER TABLE "users" ADD COLUMN "avatar_url" text;
--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "timezone" varchar(64);
--> statement-breakpoint
ALTER TABLE "users" ALTER COLUMN "timezone" SET DEFAULT 'UTC';
--> statement-breakpoint
UPDATE "users" SET "timezone" = 'UTC' WHERE "timezone" IS NULL;
--> statement-breakpoint
ALTER TABLE "users" ALTER COLUMN "timezone" SET NOT NULL;
--> statement-breakpoint
ALTER TABLE "users" RENAME COLUMN "name" TO "full_name";
--> statement-breakpoint
ALTER TABLE "users" ALTER COLUMN "full_name" SET DATA TYPE varchar(200);
