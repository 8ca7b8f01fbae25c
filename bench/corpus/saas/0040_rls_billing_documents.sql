ALTER TABLE "invoices" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "documents" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "kb_articles" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "invoices_admin_read" ON "invoices" AS PERMISSIVE FOR SELECT TO public USING ("invoices"."organization_id" IN (SELECT "memberships"."organization_id" FROM "memberships" WHERE "memberships"."user_id" = nullif(current_setting('app.user_id', true), '')::uuid AND "memberships"."role" IN ('owner', 'admin')));
--> statement-breakpoint
CREATE POLICY "documents_member_access" ON "documents" AS PERMISSIVE FOR ALL TO public USING ("documents"."organization_id" IN (SELECT "memberships"."organization_id" FROM "memberships" WHERE "memberships"."user_id" = nullif(current_setting('app.user_id', true), '')::uuid));
--> statement-breakpoint
CREATE POLICY "kb_articles_public_read" ON "kb_articles" AS PERMISSIVE FOR SELECT TO public USING ("kb_articles"."published_at" IS NOT NULL);
--> statement-breakpoint
CREATE POLICY "kb_articles_member_write" ON "kb_articles" AS PERMISSIVE FOR ALL TO public USING ("kb_articles"."organization_id" IN (SELECT "memberships"."organization_id" FROM "memberships" WHERE "memberships"."user_id" = nullif(current_setting('app.user_id', true), '')::uuid));
