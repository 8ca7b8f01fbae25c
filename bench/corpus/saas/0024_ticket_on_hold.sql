ALTER TYPE "public"."ticket_status" ADD VALUE 'on_hold' BEFORE 'solved';
--> statement-breakpoint
ALTER TABLE "tickets" ADD COLUMN "first_response_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "tickets" ADD COLUMN "solved_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "tickets" ADD COLUMN "tags" text[];
--> statement-breakpoint
ALTER TABLE "tickets" ALTER COLUMN "tags" SET DEFAULT '{}';
