ALTER TABLE "projects" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "tasks" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
ALTER TABLE "comments" ENABLE ROW LEVEL SECURITY;
--> statement-breakpoint
CREATE POLICY "projects_member_access" ON "projects" AS PERMISSIVE FOR ALL TO public USING ("projects"."organization_id" IN (SELECT "memberships"."organization_id" FROM "memberships" WHERE "memberships"."user_id" = nullif(current_setting('app.user_id', true), '')::uuid)) WITH CHECK ("projects"."organization_id" IN (SELECT "memberships"."organization_id" FROM "memberships" WHERE "memberships"."user_id" = nullif(current_setting('app.user_id', true), '')::uuid));
--> statement-breakpoint
CREATE POLICY "tasks_member_access" ON "tasks" AS PERMISSIVE FOR ALL TO public USING ("tasks"."project_id" IN (SELECT "projects"."id" FROM "projects"));
--> statement-breakpoint
CREATE POLICY "comments_member_read" ON "comments" AS PERMISSIVE FOR SELECT TO public USING ("comments"."task_id" IN (SELECT "tasks"."id" FROM "tasks"));
--> statement-breakpoint
CREATE POLICY "comments_author_write" ON "comments" AS PERMISSIVE FOR INSERT TO public WITH CHECK ("comments"."author_id" = nullif(current_setting('app.user_id', true), '')::uuid);
