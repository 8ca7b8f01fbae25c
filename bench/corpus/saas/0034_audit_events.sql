ALTER TABLE "activity_log" RENAME TO "audit_events";
--> statement-breakpoint
ALTER TABLE "audit_events" ADD COLUMN "ip_address" inet;
--> statement-breakpoint
ALTER TABLE "audit_events" ADD COLUMN "user_agent" text;
