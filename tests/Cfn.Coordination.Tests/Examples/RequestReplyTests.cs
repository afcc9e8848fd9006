using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Examples;

namespace Cfn.Coordination.Tests.Examples;

/// <summary>
/// docs/agents.md's C# example is the code of <see cref="RequestReply"/>, line for line, and run against a real
/// redis-server its coordinator gets the validator's verdict.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class RequestReplyTests(RedisServer server)
{
    private const int Db = 39; // the example's fixed IDs: a database of its own

    [Fact]
    public void AgentsPageSample_IsTheCompiledExample() =>
        Assert.Equal(ExampleSources.Region("RequestReply.cs", "agents.md"), ExampleSources.CSharpBlock("docs/agents.md", "## C# agents"));

    [Fact]
    public async Task Sample_AgainstRealRedis_CoordinatorGetsTheVerdict()
    {
        await server.Multiplexer.GetServer(server.Multiplexer.GetEndPoints()[0]).FlushDatabaseAsync(Db);
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("BLOCKING_COORDINATION_SECRET")))
        {
            // The sample reads the secret as a user's process would; nothing else in this test process reads it.
            Environment.SetEnvironmentVariable("BLOCKING_COORDINATION_SECRET", "request-reply-test-secret-0123456789abcdef");
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        Assert.Equal("pass", await RequestReply.RunAsync($"{server.Endpoint},defaultDatabase={Db}", timeout.Token));
    }
}
