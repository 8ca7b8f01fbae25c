CREATE TABLE "feature_flags" (
	"id" serial PRIMARY KEY NOT NULL,
	"key" varchar(64) NOT NULL,
	"description" text,
	"enabled_by_default" boolean DEFAULT false NOT NULL,
	CONSTRAINT "feature_flags_key_unique" UNIQUE("key")
);
--> statement-breakpoint
CREATE TABLE "organization_feature_flags" (
	"organization_id" uuid NOT NULL,
	"feature_flag_id" integer NOT NULL,
	"enabled" boolean NOT NULL,
	CONSTRAINT "organization_feature_flags_organization_id_feature_flag_id_pk" PRIMARY KEY("organization_id","feature_flag_id")
);
--> statement-breakpoint
ALTER TABLE "organization_feature_flags" ADD CONSTRAINT "organization_feature_flags_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
ALTER TABLE "organization_feature_flags" ADD CONSTRAINT "organization_feature_flags_feature_flag_id_feature_flags_id_fk" FOREIGN KEY ("feature_flag_id") REFERENCES "public"."feature_flags"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
INSERT INTO "feature_flags" ("key", "description", "enabled_by_default") VALUES
	('new_editor', 'Block editor for documents', false),
	('crm', 'Customers, contacts and deals', true),
	('helpdesk', 'Tickets', true),
	('time_tracking', 'Time entries on tasks', false),
	('webhooks_v2', 'Signed webhook deliveries', false),
	('ai_summaries', 'Summaries of long threads', false)
ON CONFLICT DO NOTHING;
